// Own binary: it sets WGRAD_PIPELINE_CACHE and WGRAD_DEVICE for the process, and the manifest is named after the executable.
//! The pipeline manifest (`gpu/warmup.rs`): a program's compiled kernels
//! are listed, the next `Device::from_env` compiles them in the background,
//! and a damaged or stale manifest costs nothing but time. One test in its
//! own binary: it sets `WGRAD_PIPELINE_CACHE` and `WGRAD_DEVICE` for the
//! process.

use wgrad_gpu_core::ops::conv::{self, ConvGeometry, ConvOptions};
use wgrad_gpu_core::ops::matmul;
use wgrad_gpu_core::testing::gpu_or_skip;
use wgrad_gpu_core::{Buffer, Device, Layout};

/// A matmul and a convolution with their gradients' kernels: the outputs.
fn work(dev: &Device) -> Vec<Vec<f32>> {
    let data = |n: usize| (0..n).map(|i| ((i * 37 % 17) as f32 - 8.0) / 8.0).collect::<Vec<f32>>();
    let a = Buffer::from_f32(dev, &data(6 * 5)).unwrap();
    let b = Buffer::from_f32(dev, &data(5 * 7)).unwrap();
    let (ab, _) = matmul::matmul(&a, &Layout::contiguous(&[6, 5]), &b, &Layout::contiguous(&[5, 7])).unwrap();
    let base = ConvGeometry::new(2, 3, (6, 6), (3, 3));
    let g = ConvGeometry { stride_h: 2, stride_w: 2, pad_top: 1, pad_bottom: 1, pad_left: 1, pad_right: 1, ..base };
    let x = Buffer::from_f32(dev, &data(2 * 3 * 6 * 6)).unwrap();
    let w = Buffer::from_f32(dev, &data(4 * 3 * 3 * 3)).unwrap();
    let y = conv::conv2d(&x, &w, 4, &g, &ConvOptions::default()).unwrap();
    let gy = Buffer::from_f32(dev, &data(2 * 4 * g.out_h() * g.out_w())).unwrap();
    let gx = conv::conv2d_input_grad(&gy, &w, 4, &g, &ConvOptions::default()).unwrap();
    let gw = conv::conv2d_weight_grad(&gy, &x, 4, &g, &ConvOptions::default()).unwrap();
    [ab, y, gx, gw].iter().map(|t| t.to_f32().unwrap()).collect()
}

#[test]
fn the_manifest_lists_compiled_kernels_and_warms_the_next_device() {
    if gpu_or_skip("pipeline manifest").is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("wgrad-manifest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::env::set_var("WGRAD_PIPELINE_CACHE", &dir);
    std::env::set_var("WGRAD_DEVICE", "gpu");
    let manifest = || {
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        let ours: Vec<_> = files.iter().filter(|f| !f.to_string_lossy().contains("other-program")).collect();
        assert_eq!(ours.len(), 1, "one manifest per adapter and program: {files:?}");
        let name = ours[0].file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("pipelines-pipeline_manifest-"), "named after the program: {name}");
        std::fs::read_to_string(ours[0]).unwrap()
    };

    // A first run compiles in the foreground and lists what it compiled.
    let first = Device::from_env().unwrap();
    let expected = work(&first);
    let compiled = first.pipelines_compiled();
    assert!(compiled >= 4, "matmul, conv and both gradients compile kernels: {compiled}");
    drop(first);
    let listed = manifest();
    assert_eq!(listed.lines().count() as u64, compiled, "every compiled kernel is listed once:\n{listed}");

    // Another program's manifest on the same adapter is not this one's
    // business: its kernels are not compiled here.
    let foreign = ["unary\tmain\t1\t1\tOP=0\n", "random\tmain\t0\t1\tDIST=0\n"];
    for line in foreign {
        assert!(!listed.contains(line.split('\t').take(2).collect::<Vec<_>>().join("\t").as_str()), "{line:?}");
    }
    let ours = std::fs::read_dir(&dir).unwrap().next().unwrap().unwrap().file_name();
    let theirs = ours.to_string_lossy().replacen("pipeline_manifest", "other-program", 1);
    std::fs::write(dir.join(theirs), foreign.concat()).unwrap();

    // The next device compiles them before they are asked for; the same
    // work then compiles nothing, gives the same numbers, and the list
    // does not grow.
    let second = Device::from_env().unwrap();
    second.finish_pipeline_warmup();
    assert_eq!(second.pipelines_compiled(), compiled, "the warm-up compiles the listed kernels");
    assert_eq!(work(&second), expected);
    assert_eq!(second.pipelines_compiled(), compiled, "nothing left to compile in the foreground");
    drop(second);
    assert_eq!(manifest(), listed);

    // A damaged manifest (garbage, an unknown shader, a stale constant)
    // is skipped line by line: the device works and gives the same numbers.
    let path = dir.join(&ours);
    let damaged =
        format!("{listed}\u{0}garbage\nno_such_shader\tmain\t1\t1\t\nmatmul\tmain\t3\t1\tNOT_AN_OVERRIDE=0\n");
    std::fs::write(&path, damaged).unwrap();
    let third = Device::from_env().unwrap();
    third.finish_pipeline_warmup();
    assert_eq!(third.pipelines_compiled(), compiled, "only the good lines are compiled");
    assert_eq!(work(&third), expected);
    drop(third);

    // Off: nothing is read or written.
    std::fs::remove_dir_all(&dir).unwrap();
    std::env::set_var("WGRAD_PIPELINE_CACHE", "off");
    let off = Device::from_env().unwrap();
    assert_eq!(work(&off), expected);
    assert!(!dir.exists(), "WGRAD_PIPELINE_CACHE=off writes no manifest");
}
