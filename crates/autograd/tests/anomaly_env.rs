// Own binary: it sets WGRAD_DETECT_ANOMALY for the process, which every test thread started afterwards would read.
//! `WGRAD_DETECT_ANOMALY=1` turns detection on for threads that start after
//! it is set (a binary of its own: the variable would leak into other tests).

use wgrad_autograd::{anomaly::ENV_VAR, is_anomaly_enabled, Device, Tensor};

#[test]
fn the_environment_variable_turns_detection_on() {
    std::env::set_var(ENV_VAR, "1");
    let caught = std::thread::spawn(|| {
        assert!(is_anomaly_enabled());
        let x = Tensor::from_vec(&[-1.0], &[1], &Device::cpu());
        drop(x.log());
    })
    .join();
    let err = caught.expect_err("log(-1) is NaN and detection is on");
    let msg = err.downcast_ref::<String>().expect("a formatted message");
    assert!(msg.contains("`log` (forward) produced NaN"), "{msg}");
}
