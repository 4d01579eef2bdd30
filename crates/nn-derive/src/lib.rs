//! `#[derive(Module)]` for wgrad-nn.
//!
//! Generates `wgrad_nn::ModuleFields` (parameters, buffers, training mode and
//! children) from a struct's fields, so that a module lists its children once
//! and cannot forget one in `set_training` or the state dict. `forward` and
//! `describe` stay hand-written in `impl Module`. The generated code names
//! `::wgrad_nn`, so the deriving crate must depend on `wgrad-nn` under that
//! name (inside wgrad-nn itself, `extern crate self as wgrad_nn` provides it),
//! or name the path on the struct: `#[module(crate = "wgrad::nn")]`.
//!
//! See the `Module` derive's documentation in wgrad-nn for the attributes.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2, TokenTree};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{parse_macro_input, Data, DeriveInput, Fields, Ident, LitStr, Member};

/// Derives `wgrad_nn::ModuleFields` from the fields' attributes:
/// `#[param]`, `#[buffer]` (with optional `rename = "..."`, `via = method`),
/// `#[module]` (with optional `rename = "..."` or `flatten`), `#[training]`
/// and `#[skip]`. Unmarked fields are plain data; an unmarked field whose
/// type mentions `Tensor` or `Module`, or one named `training`, is an error,
/// so that a tensor or child cannot be left out of the state dict silently.
#[proc_macro_derive(Module, attributes(param, buffer, module, training, skip))]
pub fn derive_module(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// What a field contributes.
enum Kind {
    Param {
        name: String,
        via: Option<Ident>,
    },
    Buffer {
        name: String,
        via: Option<Ident>,
    },
    /// `name` is empty for a flattened child (its names join the parent's).
    Child {
        name: String,
    },
    Training,
}

struct Field {
    member: Member,
    kind: Kind,
    span: Span,
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let data = match &input.data {
        Data::Struct(s) => s,
        _ => return Err(syn::Error::new(input.span(), "#[derive(Module)] supports structs only")),
    };
    let mut fields = Vec::new();
    let iter: Vec<&syn::Field> = match &data.fields {
        Fields::Named(n) => n.named.iter().collect(),
        Fields::Unnamed(u) => u.unnamed.iter().collect(),
        Fields::Unit => Vec::new(),
    };
    for (i, f) in iter.into_iter().enumerate() {
        let member = match &f.ident {
            Some(id) => Member::Named(id.clone()),
            None => Member::Unnamed(i.into()),
        };
        let default_name = match &f.ident {
            Some(id) => id.to_string().trim_start_matches("r#").to_string(),
            None => i.to_string(),
        };
        if let Some(kind) = classify(f, &default_name)? {
            fields.push(Field { member, kind, span: f.span() });
        }
    }
    if fields.iter().filter(|f| matches!(f.kind, Kind::Training)).count() > 1 {
        return Err(syn::Error::new(input.span(), "#[derive(Module)]: at most one #[training] field"));
    }
    Ok(generate(input, &fields, &krate(input)?))
}

/// The path of wgrad-nn: `::wgrad_nn`, or `#[module(crate = "wgrad::nn")]` on
/// the struct for crates that reach it through the `wgrad` facade only.
fn krate(input: &DeriveInput) -> syn::Result<syn::Path> {
    let mut path: syn::Path = syn::parse_quote!(::wgrad_nn);
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("module")) {
        attr.parse_nested_meta(|m| {
            if m.path.is_ident("crate") {
                path = m.value()?.parse::<LitStr>()?.parse()?;
                Ok(())
            } else {
                Err(m.error("expected `crate = \"path::to::wgrad_nn\"`"))
            }
        })?;
    }
    Ok(path)
}

/// The field's role from its attributes; `None` for plain data.
fn classify(f: &syn::Field, default_name: &str) -> syn::Result<Option<Kind>> {
    let mut kind: Option<Kind> = None;
    let mut skipped = false;
    // A field has one role; a second attribute is a mistake, not an override.
    let set = |kind: &mut Option<Kind>, k: Kind, span: Span| -> syn::Result<()> {
        if kind.is_some() {
            return Err(syn::Error::new(
                span,
                "#[derive(Module)]: a field takes one of #[param], #[buffer], #[module], #[training], #[skip]",
            ));
        }
        *kind = Some(k);
        Ok(())
    };
    for attr in &f.attrs {
        let path = attr.path();
        if path.is_ident("param") || path.is_ident("buffer") {
            let (mut name, mut via) = (default_name.to_string(), None);
            if let syn::Meta::List(_) = &attr.meta {
                attr.parse_nested_meta(|m| {
                    if m.path.is_ident("rename") {
                        name = m.value()?.parse::<LitStr>()?.value();
                    } else if m.path.is_ident("via") {
                        via = Some(m.value()?.parse::<Ident>()?);
                    } else {
                        return Err(m.error("expected `rename = \"...\"` or `via = method`"));
                    }
                    Ok(())
                })?;
            }
            let k = if path.is_ident("param") { Kind::Param { name, via } } else { Kind::Buffer { name, via } };
            set(&mut kind, k, attr.span())?;
        } else if path.is_ident("module") {
            let mut name = default_name.to_string();
            if let syn::Meta::List(_) = &attr.meta {
                attr.parse_nested_meta(|m| {
                    if m.path.is_ident("rename") {
                        name = m.value()?.parse::<LitStr>()?.value();
                        if name.is_empty() {
                            return Err(m.error("an empty name: use `flatten`"));
                        }
                    } else if m.path.is_ident("flatten") {
                        name = String::new();
                    } else {
                        return Err(m.error("expected `rename = \"...\"` or `flatten`"));
                    }
                    Ok(())
                })?;
            }
            set(&mut kind, Kind::Child { name }, attr.span())?;
        } else if path.is_ident("training") {
            attr.meta.require_path_only()?;
            set(&mut kind, Kind::Training, attr.span())?;
        } else if path.is_ident("skip") {
            attr.meta.require_path_only()?;
            if kind.is_some() {
                return Err(syn::Error::new(attr.span(), "#[derive(Module)]: #[skip] with another role"));
            }
            skipped = true;
        }
    }
    if skipped {
        if kind.is_some() {
            return Err(syn::Error::new(f.span(), "#[derive(Module)]: #[skip] with another role"));
        }
        return Ok(None);
    }
    if kind.is_none() {
        // The silent failure the derive exists to prevent: a tensor or child
        // left out of the state dict, or a mode flag nobody sets.
        if default_name == "training" {
            return Err(syn::Error::new(
                f.span(),
                "#[derive(Module)]: mark `training` with #[training] (set by set_training) or #[skip]",
            ));
        }
        if let Some(word) = mentions(&f.ty, &["Tensor", "Module"]) {
            return Err(syn::Error::new(
                f.ty.span(),
                format!(
                    "#[derive(Module)]: a field of a type mentioning `{word}` needs #[param], #[buffer], #[module] or #[skip]"
                ),
            ));
        }
    }
    Ok(kind)
}

/// The first of `words` that appears as an identifier in `ty`.
fn mentions(ty: &syn::Type, words: &[&str]) -> Option<String> {
    fn walk(ts: TokenStream2, words: &[&str]) -> Option<String> {
        for tt in ts {
            match tt {
                TokenTree::Ident(id) if words.iter().any(|w| id == w) => return Some(id.to_string()),
                TokenTree::Group(g) => {
                    if let Some(w) = walk(g.stream(), words) {
                        return Some(w);
                    }
                }
                _ => {}
            }
        }
        None
    }
    walk(quote!(#ty), words)
}

fn generate(input: &DeriveInput, fields: &[Field], krate: &syn::Path) -> TokenStream2 {
    let ident = &input.ident;
    let (impl_g, ty_g, where_c) = input.generics.split_for_impl();
    let d = quote!(#krate::module::__derive);
    // A field's value: the field itself, or what its `via` method returns.
    let value = |f: &Field, via: &Option<Ident>| {
        let m = &f.member;
        match via {
            Some(method) => quote_spanned!(f.span=> &self.#method()),
            None => quote_spanned!(f.span=> &self.#m),
        }
    };
    // PyTorch lists a module's own tensors before its children's (pre-order
    // over modules), whatever order `__init__` assigned them in.
    let (mut params, mut child_params) = (Vec::new(), Vec::new());
    let (mut buffers, mut child_buffers) = (Vec::new(), Vec::new());
    let mut training = Vec::new();
    let mut children = Vec::new();
    for f in fields {
        let m = &f.member;
        match &f.kind {
            Kind::Param { name, via } => {
                let v = value(f, via);
                params.push(quote_spanned!(f.span=> #d::Tensors::visit(#v, &#d::join(prefix, #name), f);));
            }
            Kind::Buffer { name, via } => {
                let v = value(f, via);
                buffers.push(quote_spanned!(f.span=> #d::Tensors::visit(#v, &#d::join(prefix, #name), f);));
            }
            Kind::Child { name } => {
                child_params
                    .push(quote_spanned!(f.span=> #d::Child::visit_parameters(&self.#m, &#d::join(prefix, #name), f);));
                child_buffers
                    .push(quote_spanned!(f.span=> #d::Child::visit_buffers(&self.#m, &#d::join(prefix, #name), f);));
                training.push(quote_spanned!(f.span=> #d::Child::set_training(&mut self.#m, training);));
                children.push(quote_spanned!(f.span=> #d::Child::collect(&self.#m, #name, &mut out);));
            }
            Kind::Training => training.push(quote_spanned!(f.span=> self.#m = training;)),
        }
    }
    params.extend(child_params);
    buffers.extend(child_buffers);
    // Methods with nothing to do keep the trait's defaults, which also keeps
    // unused-argument warnings out of the user's crate.
    let tensor = quote!(#d::Tensor);
    let visit_parameters = (!params.is_empty()).then(|| {
        quote! {
            fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &#tensor)) { #(#params)* }
        }
    });
    let visit_buffers = (!buffers.is_empty()).then(|| {
        quote! {
            fn visit_buffers(&self, prefix: &str, f: &mut dyn FnMut(&str, &#tensor)) { #(#buffers)* }
        }
    });
    let set_training = (!training.is_empty()).then(|| {
        quote! {
            fn set_training(&mut self, training: bool) { #(#training)* }
        }
    });
    let children_fn = (!children.is_empty()).then(|| {
        quote! {
            fn children(&self) -> ::std::vec::Vec<(::std::string::String, &dyn #krate::module::Module)> {
                let mut out = ::std::vec::Vec::new();
                #(#children)*
                out
            }
        }
    });
    quote! {
        #[automatically_derived]
        impl #impl_g #krate::module::ModuleFields for #ident #ty_g #where_c {
            #visit_parameters
            #visit_buffers
            #set_training
            #children_fn
        }
    }
}
