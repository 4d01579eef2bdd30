//! The [`Module`] trait: a layer or model with parameters, buffers and a mode.

use wgrad_autograd::Tensor;

/// A building block of models, like `torch.nn.Module`.
///
/// Implementors provide `forward`, and report their tensors through
/// `visit_parameters` (learned) and `visit_buffers` (state such as BatchNorm's
/// running statistics) under PyTorch's names, so that `named_parameters`
/// yields `layer1.0.conv1.weight`-style names in PyTorch's order.
pub trait Module: Send + Sync {
    /// Applies the module.
    fn forward(&self, x: &Tensor) -> Tensor;

    /// Calls `f(name, tensor)` for each learned parameter, names prefixed by `prefix`.
    fn visit_parameters(&self, _prefix: &str, _f: &mut dyn FnMut(&str, &Tensor)) {}

    /// Calls `f(name, tensor)` for each non-learned state tensor (running stats).
    fn visit_buffers(&self, _prefix: &str, _f: &mut dyn FnMut(&str, &Tensor)) {}

    /// Switches training mode (dropout, batch norm) on or off, recursively.
    fn set_training(&mut self, _training: bool) {}

    /// A one-line description, e.g. `Linear(in_features=4, out_features=2)`.
    fn describe(&self) -> String;

    /// Child modules with their names, for `summary` (leaf layers have none).
    fn children(&self) -> Vec<(String, &dyn Module)> {
        Vec::new()
    }
}

/// Joins a name prefix and a field name with a dot.
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Conveniences every module gets.
pub trait ModuleExt: Module {
    /// `(name, tensor)` of every parameter in PyTorch's order.
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        self.visit_parameters("", &mut |n, t| v.push((n.to_string(), t.clone())));
        v
    }

    /// Every parameter.
    fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters().into_iter().map(|(_, t)| t).collect()
    }

    /// `(name, tensor)` of every buffer.
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        self.visit_buffers("", &mut |n, t| v.push((n.to_string(), t.clone())));
        v
    }

    /// Number of learned scalars.
    fn num_parameters(&self) -> usize {
        self.parameters().iter().map(|p| p.numel()).sum()
    }

    /// Training mode (`model.train()`).
    fn train(&mut self) {
        self.set_training(true)
    }

    /// Evaluation mode (`model.eval()`).
    fn eval(&mut self) {
        self.set_training(false)
    }

    /// Clears every parameter's gradient.
    fn zero_grad(&self) {
        for p in self.parameters() {
            p.zero_grad();
        }
    }

    /// A table of layers, output shapes and parameter counts for one input,
    /// like Keras' `model.summary()` / torchinfo.
    fn summary(&self, input: &Tensor) -> String {
        let mut rows = Vec::new();
        let out = wgrad_autograd::no_grad(|| summarize(self.as_dyn(), "", input, 0, &mut rows));
        let mut s = format!("{:<48} {:>20} {:>12}\n", "Layer", "Output shape", "Params");
        s.push_str(&"-".repeat(82));
        s.push('\n');
        for (name, shape, params) in rows {
            s.push_str(&format!("{name:<48} {shape:>20} {params:>12}\n"));
        }
        s.push_str(&"-".repeat(82));
        s.push('\n');
        s.push_str(&format!("Total params: {}\nOutput shape: {:?}\n", self.num_parameters(), out.shape()));
        s
    }

    /// `self` as a trait object.
    fn as_dyn(&self) -> &dyn Module;
}

impl<M: Module> ModuleExt for M {
    fn as_dyn(&self) -> &dyn Module {
        self
    }
}

impl ModuleExt for dyn Module {
    fn as_dyn(&self) -> &dyn Module {
        self
    }
}

/// Own parameters of a module (not its children's).
fn own_params(m: &dyn Module) -> usize {
    let mut total = 0;
    m.visit_parameters("", &mut |_, t| total += t.numel());
    let children: usize = m
        .children()
        .iter()
        .map(|(_, c)| {
            let mut n = 0;
            c.visit_parameters("", &mut |_, t| n += t.numel());
            n
        })
        .sum();
    total - children
}

/// Runs `m` on `x`, descending into sequential children to record each row.
fn summarize(m: &dyn Module, name: &str, x: &Tensor, depth: usize, rows: &mut Vec<(String, String, usize)>) -> Tensor {
    let label = format!(
        "{}{}{}",
        "  ".repeat(depth),
        if name.is_empty() { String::new() } else { format!("{name}: ") },
        m.describe()
    );
    let children = m.children();
    // Only chains of children can be traced layer by layer; other containers
    // (residual blocks) are reported as one row.
    if !children.is_empty() && m.describe().starts_with("Sequential") {
        rows.push((label, String::new(), own_params(m)));
        let mut h = x.clone();
        for (n, c) in children {
            h = summarize(c, &n, &h, depth + 1, rows);
        }
        return h;
    }
    let y = m.forward(x);
    let mut total = 0;
    m.visit_parameters("", &mut |_, t| total += t.numel());
    rows.push((label, format!("{:?}", y.shape()), total));
    y
}
