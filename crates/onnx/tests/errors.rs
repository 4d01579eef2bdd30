//! What an export refuses, and how it says so; the batch dimension's
//! symbolic and fixed forms; the file on disk.

use prost::Message;
use wgrad_autograd::{Device, Tensor};
use wgrad_nn::{Dropout, Init, Linear, Module, ModuleExt, Sequential};
use wgrad_onnx::proto::{tensor_shape_proto::dimension::Value, type_proto, ModelProto};
use wgrad_onnx::{export, Error, Exporter};

fn linear(dev: &Device) -> Linear {
    Linear::builder(3, 2).build(&mut Init::new(dev, 1))
}

fn dims(t: &wgrad_onnx::proto::ValueInfoProto) -> Vec<String> {
    let Some(type_proto::Value::TensorType(tt)) = t.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        panic!("a tensor type")
    };
    tt.shape
        .as_ref()
        .unwrap()
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(Value::DimValue(v)) => v.to_string(),
            Some(Value::DimParam(p)) => p.clone(),
            None => "?".into(),
        })
        .collect()
}

#[test]
fn an_op_without_an_onnx_form_is_an_error_naming_it_and_its_place() {
    let dev = Device::cpu();
    let m = linear(&dev);
    let x = Tensor::zeros(&[4, 3], &dev);
    let err = Exporter::new(&m)
        .input("x", &x)
        .trace(|x| {
            let y = m.forward(&x[0]).relu();
            vec![Tensor::custom_op("my_host_op", &[&y], &y.detach(), |g| vec![Some(g.clone())])]
        })
        .unwrap_err();
    match &err {
        Error::Unsupported { op, index, total, .. } => {
            assert_eq!(op, "my_host_op");
            assert_eq!((*index, *total), (3, 4), "linear, relu, detach, then the custom op: {err}");
        }
        other => panic!("expected Unsupported, got {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("op #3") && msg.contains("my_host_op"), "{msg}");
}

#[test]
fn training_mode_is_refused() {
    let dev = Device::cpu();
    let mut m = Sequential::new().add(linear(&dev)).add(Dropout::builder(0.5).build(&mut Init::new(&dev, 3)));
    m.train();
    let x = Tensor::zeros(&[4, 3], &dev);
    let err = Exporter::new(&m).input("x", &x).forward().unwrap_err();
    assert!(err.to_string().contains("model.eval()"), "{err}");
    m.eval();
    let model = Exporter::new(&m).input("x", &x).forward().unwrap();
    let ops: Vec<_> = model.proto().graph.as_ref().unwrap().node.iter().map(|n| n.op_type.clone().unwrap()).collect();
    // Dropout in eval runs no op; the Identity names the output.
    assert_eq!(ops, ["Gemm", "Identity"]);
}

#[test]
fn a_tensor_made_outside_the_traced_ops_is_an_error() {
    let dev = Device::cpu();
    let m = linear(&dev);
    let x = Tensor::zeros(&[4, 3], &dev);
    let err = Exporter::new(&m)
        .input("x", &x)
        .trace(|x| {
            let y = m.forward(&x[0]);
            // A new tensor over y's buffer: its history is invisible to the trace.
            let (buf, layout) = y.buffer_and_layout();
            let hidden = Tensor::from_parts(buf, layout, y.dtype());
            vec![hidden.relu()]
        })
        .unwrap_err();
    assert!(matches!(err, Error::UntracedTensor { index: 1, .. }), "{err}");
}

#[test]
fn the_batch_is_symbolic_when_the_shapes_follow_it_and_fixed_with_a_reason_otherwise() {
    let dev = Device::cpu();
    let m = linear(&dev);
    let x = Tensor::zeros(&[4, 3], &dev);
    let model =
        Exporter::new(&m).input("x", &x).trace(|x| vec![m.forward(&x[0]).reshape(&[x[0].shape()[0] * 2])]).unwrap();
    let g = model.proto().graph.clone().unwrap();
    assert_eq!(model.report().fixed_batch, None);
    assert_eq!(dims(&g.input[0]), ["batch", "3"]);
    assert_eq!(dims(&g.output[0]), ["batch"], "a flattened [B·2] output");

    // A host constant shaped by the batch cannot follow it.
    let model = Exporter::new(&m)
        .input("x", &x)
        .trace(|x| {
            let b = x[0].shape()[0];
            let ramp: Vec<f32> = (0..b * 2).map(|i| i as f32).collect();
            vec![&m.forward(&x[0]) + &Tensor::from_vec(&ramp, &[b, 2], &dev)]
        })
        .unwrap();
    let why = model.report().fixed_batch.clone().expect("a fixed batch");
    assert!(why.contains("host data"), "{why}");
    assert_eq!(dims(&model.proto().graph.as_ref().unwrap().input[0]), ["4", "3"]);

    // A function that only runs at the example's batch size.
    let model = Exporter::new(&m).input("x", &x).trace(|x| vec![m.forward(&x[0]).reshape(&[8])]).unwrap();
    let why = model.report().fixed_batch.clone().expect("a fixed batch");
    assert!(why.contains("fails at batch size 5") && why.contains("reshape"), "{why}");

    let model = Exporter::new(&m).input("x", &x).fixed_batch().forward().unwrap();
    assert!(model.report().fixed_batch.is_some());
}

#[test]
fn parameters_are_initializers_under_their_state_dict_names_and_the_file_is_written_whole() {
    let dev = Device::cpu();
    let mut m =
        Sequential::new().add(linear(&dev)).add(Linear::builder(2, 5).bias(false).build(&mut Init::new(&dev, 2)));
    m.eval();
    let dir = std::env::temp_dir().join(format!("wgrad-onnx-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.onnx");
    let report = export(&m, &Tensor::zeros(&[2, 3], &dev), &path).unwrap();
    assert_eq!(report.parameters, ["0.weight", "0.bias", "1.weight"]);
    let model = ModelProto::decode(&std::fs::read(&path).unwrap()[..]).unwrap();
    let g = model.graph.unwrap();
    let names: Vec<_> = g.initializer.iter().map(|i| i.name.clone().unwrap()).collect();
    assert_eq!(names, ["0.weight", "0.bias", "1.weight"]);
    let w = &g.initializer[0];
    assert_eq!(w.dims, [2, 3]);
    let stored: Vec<f32> =
        w.raw_data.as_ref().unwrap().chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(stored, m.named_parameters()[0].1.to_vec());
    assert_eq!(model.opset_import[0].version, Some(wgrad_onnx::OPSET));
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 1, "no temporary left beside the file: {leftovers:?}");

    let missing = dir.join("no/such/dir/m.onnx");
    let err = export(&m, &Tensor::zeros(&[2, 3], &dev), &missing).unwrap_err();
    assert!(matches!(&err, Error::Io { path, .. } if *path == missing), "{err}");
    assert!(err.to_string().contains("no/such/dir/m.onnx"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_export_arguments_are_errors() {
    let dev = Device::cpu();
    let m = linear(&dev);
    let x = Tensor::zeros(&[4, 3], &dev);
    let err = Exporter::new(&m).trace(|_| vec![]).unwrap_err();
    assert!(err.to_string().contains("at least one input"), "{err}");
    let err = Exporter::new(&m).input("x", &x).input("x", &x).trace(|x| vec![x[0].clone()]).unwrap_err();
    assert!(err.to_string().contains("two inputs are named `x`"), "{err}");
    let err = Exporter::new(&m).input_with_batch_axis("x", &x, Some(2)).forward().unwrap_err();
    assert!(err.to_string().contains("no batch dim 2"), "{err}");
}
