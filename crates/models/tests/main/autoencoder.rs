//! The autoencoder and the VAE: shapes and names, the KL closed form, the
//! reparameterisation's gradients, and that training lowers the loss.

use wgrad_autograd::gradcheck::{check_gradients, GradCheck};
use wgrad_autograd::{Device, Generator, Tensor};
use wgrad_gpu_core::testing::fresh_backends;
use wgrad_models::{kl_divergence, reconstruction_loss, Autoencoder, Vae};
use wgrad_nn::optim::{Adam, Optimizer};
use wgrad_nn::{Init, Module, ModuleExt, ModuleFields};

/// Seeded stand-in digits in [0, 1]: a bright blob whose position depends on
/// the image, over faint noise, so there is structure to learn.
fn images(n: usize, dev: &Device) -> Tensor {
    let mut v = vec![0.0f32; n * 784];
    for i in 0..n {
        let (cy, cx) = (8 + (i * 5) % 12, 8 + (i * 7) % 12);
        for y in 0..28 {
            for x in 0..28 {
                let d2 = (y as f32 - cy as f32).powi(2) + (x as f32 - cx as f32).powi(2);
                v[i * 784 + y * 28 + x] = (-d2 / 18.0).exp() * 0.95 + 0.02 * ((y * 31 + x * 17 + i) % 3) as f32;
            }
        }
    }
    Tensor::from_vec(&v, &[n, 1, 28, 28], dev)
}

#[test]
fn vae_has_the_pytorch_example_names_counts_and_shapes() {
    let dev = Device::cpu();
    let vae = Vae::mnist(&mut Init::new(&dev, 0));
    assert_eq!(vae.num_parameters(), 652_824);
    let names: Vec<String> = vae.named_parameters().into_iter().map(|(n, _)| n).collect();
    let expected: Vec<String> = ["fc1", "fc21", "fc22", "fc3", "fc4"]
        .iter()
        .flat_map(|l| [format!("{l}.weight"), format!("{l}.bias")])
        .collect();
    assert_eq!(names, expected);
    let x = images(3, &dev);
    let (mu, logvar) = vae.encode(&x);
    assert_eq!((mu.shape().to_vec(), logvar.shape().to_vec()), (vec![3, 20], vec![3, 20]));
    let y = vae.forward(&x);
    assert_eq!(y.shape(), vec![3, 1, 28, 28]);
    assert!(y.to_vec().iter().all(|&p| p > 0.0 && p < 1.0), "decoder output must be probabilities");
    let s = vae.sample(5, &mut Generator::new(1));
    assert_eq!(s.shape(), vec![5, 1, 28, 28]);
    let (total, recon, kl) = vae.loss(&x, &mut Generator::new(2));
    assert!((total.item() - recon.item() - kl.item()).abs() < 1e-3 * total.item().abs());
    let kids: Vec<String> = vae.children().into_iter().map(|(n, _)| n).collect();
    assert_eq!(kids, ["fc1", "fc21", "fc22", "fc3", "fc4"]);
    assert!(vae.summary(&x).contains("Total params: 652824"));
}

#[test]
fn autoencoders_reconstruct_the_input_shape() {
    let dev = Device::cpu();
    let mut init = Init::new(&dev, 0);
    let mlp = Autoencoder::mlp(64, 8, &mut init);
    let names: Vec<String> = mlp.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "encoder.1.weight",
            "encoder.1.bias",
            "encoder.3.weight",
            "encoder.3.bias",
            "decoder.0.weight",
            "decoder.0.bias",
            "decoder.2.weight",
            "decoder.2.bias"
        ]
    );
    assert_eq!(mlp.num_parameters(), 784 * 64 + 64 + 64 * 8 + 8 + 8 * 64 + 64 + 64 * 784 + 784);
    let conv = Autoencoder::conv(10, &mut init);
    assert!(conv.named_parameters().iter().any(|(n, _)| n == "decoder.5.weight"));
    for (ae, latent) in [(&mlp, 8), (&conv, 10)] {
        let x = images(2, &dev);
        assert_eq!(ae.encode(&x).shape(), vec![2, latent]);
        let y = ae.forward(&x);
        assert_eq!(y.shape(), vec![2, 1, 28, 28]);
        assert!(y.to_vec().iter().all(|&p| p > 0.0 && p < 1.0));
        assert!(ae.loss(&x).item().is_finite());
    }
}

#[test]
fn kl_term_matches_the_closed_form() {
    // Per row: -0.5 * sum(1 + lv - mu² - e^lv); rows averaged.
    let mu = [0.5f32, -1.0, 0.0, 2.0, 0.3, -0.7];
    let lv = [0.0f32, 2f32.ln(), -1.0, 0.3, 0.1, -0.4];
    let expected: f64 =
        mu.iter().zip(&lv).map(|(&m, &l)| -0.5 * (1.0 + l as f64 - (m as f64).powi(2) - (l as f64).exp())).sum::<f64>()
            / 2.0;
    for dev in fresh_backends("kl_term_matches_the_closed_form") {
        let kl = kl_divergence(&Tensor::from_vec(&mu, &[2, 3], &dev), &Tensor::from_vec(&lv, &[2, 3], &dev)).item();
        assert!((kl as f64 - expected).abs() < 1e-5 * expected.abs(), "{}: {kl} vs {expected}", dev.name());
        // The prior itself is at zero divergence.
        let zero = kl_divergence(&Tensor::zeros(&[4, 5], &dev), &Tensor::zeros(&[4, 5], &dev)).item();
        assert!(zero.abs() < 1e-7, "{}: KL(N(0,I)||N(0,I)) = {zero}", dev.name());
    }
    // BCE summed per image, averaged over the batch.
    let dev = Device::cpu();
    let p = Tensor::from_vec(&[0.25, 0.5, 0.8, 0.9], &[2, 2], &dev);
    let t = Tensor::from_vec(&[0.0, 1.0, 1.0, 0.5], &[2, 2], &dev);
    let bce = -((0.75f64).ln() + (0.5f64).ln() + (0.8f64).ln() + 0.5 * (0.9f64).ln() + 0.5 * (0.1f64).ln()) / 2.0;
    assert!((reconstruction_loss(&p, &t).item() as f64 - bce).abs() < 1e-5);
}

#[test]
fn reparameterisation_is_reproducible_and_differentiable_in_mu_and_logvar() {
    for dev in fresh_backends("reparameterisation_is_reproducible_and_differentiable_in_mu_and_logvar") {
        let gen = Generator::new(42);
        let mu = Tensor::from_vec(&[0.3, -0.8, 1.2, 0.0, 0.5, -0.1], &[2, 3], &dev);
        let lv = Tensor::from_vec(&[-0.5, 0.2, 0.0, 0.7, -1.1, 0.4], &[2, 3], &dev);
        // z = mu + exp(lv / 2) * eps with eps from the same generator state.
        let eps = gen.clone().normal(&[2, 3], 0.0, 1.0, &dev).to_vec();
        let z = Vae::reparameterize(&mu, &lv, &mut gen.clone()).to_vec();
        for i in 0..6 {
            let want = mu.to_vec()[i] + (0.5 * lv.to_vec()[i]).exp() * eps[i];
            assert!((z[i] - want).abs() < 1e-5, "{}: z[{i}] = {} vs {want}", dev.name(), z[i]);
        }
        assert_eq!(z, Vae::reparameterize(&mu, &lv, &mut gen.clone()).to_vec(), "same state, same sample");
        let opts = GradCheck { eps: 1e-2, atol: 2e-3, rtol: 2e-3 };
        check_gradients(|t| Vae::reparameterize(&t[0], &t[1], &mut gen.clone()), &[mu.clone(), lv.clone()], opts)
            .unwrap_or_else(|e| panic!("reparameterize on {}: {e}", dev.name()));
        check_gradients(|t| kl_divergence(&t[0], &t[1]), &[mu, lv], opts)
            .unwrap_or_else(|e| panic!("kl_divergence on {}: {e}", dev.name()));
    }
}

#[test]
fn a_few_adam_steps_lower_the_losses() {
    for dev in fresh_backends("a_few_adam_steps_lower_the_losses") {
        let x = images(8, &dev);
        let mut init = Init::new(&dev, 3);
        let vae = Vae::new(32, 4, &mut init);
        let eval = Generator::new(99);
        let before = vae.loss(&x, &mut eval.clone()).0.item();
        let mut opt = Adam::new(vae.parameters(), 3e-3);
        for _ in 0..15 {
            let (total, _, _) = vae.loss(&x, init.generator());
            opt.zero_grad();
            total.backward();
            opt.step();
        }
        let after = vae.loss(&x, &mut eval.clone()).0.item();
        assert!(after < 0.9 * before, "{}: VAE loss {before} -> {after}", dev.name());

        let ae = Autoencoder::conv(4, &mut init);
        let before = ae.loss(&x).item();
        let mut opt = Adam::new(ae.parameters(), 3e-3);
        for _ in 0..15 {
            let l = ae.loss(&x);
            opt.zero_grad();
            l.backward();
            opt.step();
        }
        let after = ae.loss(&x).item();
        assert!(after < 0.9 * before, "{}: conv AE loss {before} -> {after}", dev.name());
    }
}
