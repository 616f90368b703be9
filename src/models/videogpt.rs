//! Import of VideoGPT's published VQ-VAE tokenizers (Yan et al. 2021, wilson1yan/VideoGPT:
//! `bair_stride4x2x2`, `ucf101_stride4x4x4`, `kinetics_stride4x4x4`, `kinetics_stride2x4x4`).
//!
//! They are PyTorch Lightning `.ckpt` files: a PyTorch zip archive whose `data.pkl` holds a dict
//! with the weights under `state_dict` and the training arguments under
//! `hyper_parameters['args']`, an `argparse.Namespace`. The weights are read with
//! `pytorch-reader` (Burn's reader of the zip + pickle format). That reader keeps a Namespace
//! opaque, so the arguments are read by the small pickle walk below, which follows the pickle
//! opcodes and keeps plain values, dicts and the state of `NEWOBJ`-built objects. Nothing runs
//! Python. What the reference fixes rather than stores: 2 attention heads, EMA decay 0.99,
//! commitment β 0.25 (`videogpt/vqvae.py`).
use crate::models::vqvae::{Resize, VqVae, VqVaeConfig};
use crate::models::ModelConfig;
use anyhow::{anyhow, bail, Context, Result};
use pytorch_reader::{DType, PytorchReader};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek};
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

/// A VideoGPT VQ-VAE read from a Lightning checkpoint, in brainscale's layout.
pub struct Imported {
    pub vs: nn::VarStore,
    pub model: VqVae,
    /// The training arguments the config came from (name → value as text), for the record.
    pub args: Vec<(String, String)>,
}

/// Reads `ckpt` (a VideoGPT VQ-VAE Lightning checkpoint) into a VQ-VAE on the CPU: the config
/// from `hyper_parameters['args']` (or `hyper_parameters` itself when the arguments were saved
/// flat), with residual convs without bias and VideoGPT's preprocessing ([`Resize::Videogpt`]);
/// every tensor of `state_dict` mapped to brainscale's names, BatchNorm running statistics
/// included and `num_batches_tracked` dropped. Errors name the file and the missing or
/// mismatched field or tensor; a tensor of the checkpoint that maps to nothing is an error too.
pub fn import_checkpoint(ckpt: &Path) -> Result<Imported> {
    let ctx = || format!("importing VideoGPT checkpoint {}", ckpt.display());
    // read_hyper_parameters's errors name the file already.
    let args = read_hyper_parameters(ckpt)?;
    let cfg = config_from_args(&args).with_context(ctx)?;
    let reader = PytorchReader::with_top_level_key(ckpt, "state_dict")
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("reading the weights (`state_dict`) of {}", ckpt.display()))?;
    let tensors = reader.tensors();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = VqVae::new(&vs.root(), &cfg).with_context(ctx)?;
    let mut used = HashSet::new();
    tch::no_grad(|| -> Result<()> {
        for (name, mut var) in vs.variables() {
            if name == "codebook.initialized" {
                // brainscale's flag that the codebook holds trained codes.
                let _ = var.fill_(1.0);
                continue;
            }
            let src = reference_name(&name, cfg.n_res_layers)
                .ok_or_else(|| anyhow!("no VideoGPT name for brainscale tensor {name}"))?;
            let t = tensors.get(&src).ok_or_else(|| {
                anyhow!(
                    "{}: `state_dict` has no tensor `{src}` (brainscale's {name}); is it a \
                     VideoGPT VQ-VAE checkpoint?",
                    ckpt.display()
                )
            })?;
            let want: Vec<usize> = var.size().iter().map(|&d| d as usize).collect();
            if t.shape() != want.as_slice() {
                bail!(
                    "{}: tensor `{src}` has shape {:?}, the config in hyper_parameters implies {want:?}",
                    ckpt.display(),
                    t.shape()
                );
            }
            var.copy_(&to_tch(t).with_context(|| format!("{}: `{src}`", ckpt.display()))?);
            used.insert(src);
        }
        Ok(())
    })?;
    let mut extra: Vec<&String> = tensors
        .keys()
        .filter(|k| !used.contains(*k) && !k.ends_with("num_batches_tracked"))
        .collect();
    extra.sort();
    if !extra.is_empty() {
        bail!(
            "{}: tensors of `state_dict` that the VQ-VAE of its config does not have: {extra:?}",
            ckpt.display()
        );
    }
    vs.freeze();
    let mut args: Vec<(String, String)> = args
        .into_iter()
        .map(|(k, v)| (k, format!("{v:?}")))
        .collect();
    args.sort();
    Ok(Imported { vs, model, args })
}

/// A tensor's bytes as a float32 libtorch tensor.
fn to_tch(t: &pytorch_reader::Tensor) -> Result<Tensor> {
    let kind = match t.dtype() {
        DType::F32 => Kind::Float,
        DType::F64 => Kind::Double,
        DType::F16 => Kind::Half,
        DType::BF16 => Kind::BFloat16,
        other => bail!("expected a floating-point tensor, got {other:?}"),
    };
    let bytes = t.read()?;
    let shape: Vec<i64> = t.shape().iter().map(|&d| d as i64).collect();
    Ok(Tensor::f_from_data_size(&bytes, &shape, kind)?.to_kind(Kind::Float))
}

/// The reference's name of a brainscale VQ-VAE tensor (`videogpt/vqvae.py`): the residual
/// block's `nn.Sequential` indices (BN 0, conv 2, BN 3, conv 5, BN 6, AxialBlock 8), the stack's
/// final BatchNorm after the blocks, attention over t, h, w = brainscale's axes 1, 2, 3.
fn reference_name(name: &str, n_res_layers: i64) -> Option<String> {
    let p: Vec<&str> = name.split('.').collect();
    let leaf = *p.last()?;
    let conv = |module: String| Some(format!("{module}.{leaf}"));
    let res = |p: &[&str]| -> Option<String> {
        // p: ["<i>", "bn1", leaf] | ["<i>", "attn_1", "w_qs", leaf] | ["bn", leaf]
        if p[0] == "bn" {
            return Some(format!("res_stack.{n_res_layers}.{leaf}"));
        }
        let i: i64 = p[0].parse().ok()?;
        let inner = match p[1] {
            "bn1" => "block.0".to_string(),
            "conv1" => "block.2.conv".to_string(),
            "bn2" => "block.3".to_string(),
            "conv2" => "block.5.conv".to_string(),
            "bn3" => "block.6".to_string(),
            a @ ("attn_1" | "attn_2" | "attn_3") => {
                let axis = ["attn_t", "attn_h", "attn_w"][a[5..].parse::<usize>().ok()? - 1];
                format!("block.8.{axis}.{}", p[2])
            }
            _ => return None,
        };
        Some(format!("res_stack.{i}.{inner}.{leaf}"))
    };
    match p.as_slice() {
        ["encoder", "conv_last", _] => conv("encoder.conv_last.conv".into()),
        ["encoder", c, _] if c.starts_with("conv") => conv(format!(
            "encoder.convs.{}.conv",
            c[4..].parse::<usize>().ok()?
        )),
        ["decoder", c, _] if c.starts_with("convt") => conv(format!(
            "decoder.convts.{}.convt",
            c[5..].parse::<usize>().ok()?
        )),
        [side @ ("encoder" | "decoder"), "res_stack", rest @ ..] if rest.len() >= 2 => {
            Some(format!("{side}.{}", res(rest)?))
        }
        [m @ ("pre_vq_conv" | "post_vq_conv"), _] => conv(format!("{m}.conv")),
        ["codebook", b @ ("embeddings" | "N" | "z_avg")] => Some(format!("codebook.{b}")),
        _ => None,
    }
}

/// The VQ-VAE config of VideoGPT's arguments (`scripts/train_vqvae.py`, `VQVAE.__init__`).
pub fn config_from_args(args: &HashMap<String, PyVal>) -> Result<VqVaeConfig> {
    let int = |k: &str| -> Result<i64> {
        match args.get(k) {
            Some(PyVal::Int(v)) => Ok(*v),
            Some(other) => bail!("hyper_parameters field `{k}` must be an int, got {other:?}"),
            None => bail!("hyper_parameters has no field `{k}`"),
        }
    };
    let downsample = match args.get("downsample") {
        Some(PyVal::List(v)) if v.len() == 3 => {
            let mut d = [0i64; 3];
            for (slot, x) in d.iter_mut().zip(v) {
                match x {
                    PyVal::Int(i) => *slot = *i,
                    other => bail!("hyper_parameters field `downsample` holds {other:?}"),
                }
            }
            d
        }
        Some(other) => {
            bail!("hyper_parameters field `downsample` must be 3 ints (t, h, w), got {other:?}")
        }
        None => bail!("hyper_parameters has no field `downsample`"),
    };
    let cfg = VqVaeConfig {
        resolution: int("resolution")?,
        clip_len: int("sequence_length")?,
        downsample,
        n_hiddens: int("n_hiddens")?,
        n_res_layers: int("n_res_layers")?,
        n_codes: int("n_codes")?,
        embedding_dim: int("embedding_dim")?,
        // Fixed in the reference: AxialBlock(n_hiddens, 2), Codebook's 0.99 and 0.25.
        attn_heads: 2,
        ema_decay: 0.99,
        commitment: 0.25,
        res_conv_bias: false,
        resize: Resize::Videogpt,
    };
    cfg.validate()
        .context("the config in hyper_parameters is not a valid VQ-VAE")?;
    Ok(cfg)
}

/// A Python value as far as a config needs: lists and tuples are both `List`; an object built
/// by `NEWOBJ` (a Namespace, a dict subclass) keeps its dict items and its `BUILD` state.
#[derive(Debug, Clone, PartialEq)]
pub enum PyVal {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<PyVal>),
    Dict(Vec<(PyVal, PyVal)>),
    /// `module.name` of a class or function.
    Global(String),
    Object {
        class: String,
        items: Vec<(PyVal, PyVal)>,
        state: Box<PyVal>,
    },
    /// A call's result this walk does not interpret (tensors, storages), by callable name.
    Opaque(String),
}

impl PyVal {
    /// The string-keyed entries of a dict, or of an object's items and `__dict__` state.
    fn entries(&self) -> Option<HashMap<String, PyVal>> {
        let pairs: Vec<&(PyVal, PyVal)> = match self {
            PyVal::Dict(d) => d.iter().collect(),
            PyVal::Object { items, state, .. } => {
                let mut v: Vec<&(PyVal, PyVal)> = items.iter().collect();
                if let PyVal::Dict(s) = state.as_ref() {
                    v.extend(s.iter());
                }
                v
            }
            _ => return None,
        };
        Some(
            pairs
                .into_iter()
                .filter_map(|(k, v)| match k {
                    PyVal::Str(s) => Some((s.clone(), v.clone())),
                    _ => None,
                })
                .collect(),
        )
    }
}

/// The training arguments of a Lightning checkpoint: `hyper_parameters['args']` when it is
/// there (a Namespace or a dict), else the entries of `hyper_parameters` itself.
pub fn read_hyper_parameters(ckpt: &Path) -> Result<HashMap<String, PyVal>> {
    let top = read_pickle(ckpt)?;
    let entries = top
        .entries()
        .ok_or_else(|| anyhow!("{}: the pickle is not a dict", ckpt.display()))?;
    let hp = entries.get("hyper_parameters").ok_or_else(|| {
        let mut k: Vec<&String> = entries.keys().collect();
        k.sort();
        // A bare `state_dict` saved with torch.save has one key per tensor: name a few.
        let shown: Vec<&String> = k.iter().take(8).copied().collect();
        let more = if k.len() > 8 {
            format!(" and {} more", k.len() - 8)
        } else {
            String::new()
        };
        let bare = if entries.contains_key("state_dict") {
            ""
        } else {
            " (this looks like a bare state_dict, not a Lightning checkpoint: the config cannot \
             be known without its training arguments)"
        };
        anyhow!(
            "{}: no `hyper_parameters` (a Lightning checkpoint has the training arguments \
             there); found keys {shown:?}{more}{bare}",
            ckpt.display()
        )
    })?;
    let hp = hp.entries().ok_or_else(|| {
        anyhow!(
            "{}: `hyper_parameters` is not a dict: {hp:?}",
            ckpt.display()
        )
    })?;
    match hp.get("args") {
        Some(a) => a.entries().ok_or_else(|| {
            anyhow!(
                "{}: hyper_parameters['args'] is neither a Namespace nor a dict: {a:?}",
                ckpt.display()
            )
        }),
        None => Ok(hp),
    }
}

/// The top-level object of a PyTorch zip checkpoint's `data.pkl`.
pub fn read_pickle(ckpt: &Path) -> Result<PyVal> {
    if ckpt.is_dir() {
        bail!(
            "{} is a folder: give the checkpoint file (.ckpt) itself",
            ckpt.display()
        );
    }
    let mut f = std::fs::File::open(ckpt).with_context(|| format!("opening {}", ckpt.display()))?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic)?;
    f.rewind()?;
    let mut z = zip::ZipArchive::new(f).map_err(|e| {
        // Name the likely cause from the first bytes: a zip that does not open is cut short or
        // damaged (an interrupted download); torch < 1.6 wrote a bare pickle (protocol 2: 0x80 0x02).
        let why = match (n, magic) {
            (0, _) => "the file is empty".to_string(),
            (2, [b'P', b'K']) => {
                format!("a zip archive that cannot be read, truncated or corrupt ({e})")
            }
            (2, [0x80, _]) => "a legacy (torch < 1.6) checkpoint, which is not supported: \
                 re-save it with torch ≥ 1.6 (`torch.save(torch.load(f), g)`)"
                .to_string(),
            _ => format!("not a PyTorch checkpoint (no zip archive: {e})"),
        };
        anyhow!("{}: {why}", ckpt.display())
    })?;
    let name = z
        .file_names_raw()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .find(|n| n == "data.pkl" || n.ends_with("/data.pkl"))
        .ok_or_else(|| anyhow!("{}: the archive has no data.pkl", ckpt.display()))?;
    let mut bytes = Vec::new();
    z.by_name(&name)
        .map_err(|e| anyhow!("{e}"))?
        .read_to_end(&mut bytes)?;
    unpickle(&bytes).with_context(|| format!("{}: reading {name}", ckpt.display()))
}

/// Values live in an arena so that the memo aliases them as Python's does (a `BUILD` or
/// `SETITEMS` on an object is seen through every reference to it).
enum Node {
    Val(PyVal),
    List(Vec<usize>),
    Dict(Vec<(usize, usize)>),
    Object {
        class: String,
        items: Vec<(usize, usize)>,
        state: Option<usize>,
    },
}

struct Walk<'a> {
    b: &'a [u8],
    pos: usize,
    arena: Vec<Node>,
    stack: Vec<usize>,
    marks: Vec<usize>,
    memo: HashMap<u64, usize>,
}

impl Walk<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if self.pos + n > self.b.len() {
            bail!("pickle ends inside an opcode at byte {}", self.pos);
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn uint(&mut self, n: usize) -> Result<u64> {
        let s = self.take(n)?;
        Ok(s.iter()
            .rev()
            .fold(0u64, |acc, &byte| (acc << 8) | byte as u64))
    }
    fn line(&mut self) -> Result<String> {
        let end = self.b[self.pos..]
            .iter()
            .position(|&c| c == b'\n')
            .ok_or_else(|| anyhow!("pickle line without end"))?;
        let s = String::from_utf8_lossy(&self.b[self.pos..self.pos + end]).into_owned();
        self.pos += end + 1;
        Ok(s)
    }
    fn push(&mut self, n: Node) {
        self.arena.push(n);
        self.stack.push(self.arena.len() - 1);
    }
    fn pop(&mut self) -> Result<usize> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            bail!("pickle pops past a mark at byte {}", self.pos);
        }
        self.stack
            .pop()
            .ok_or_else(|| anyhow!("pickle stack underflow at byte {}", self.pos))
    }
    fn pop_mark(&mut self) -> Result<Vec<usize>> {
        let m = self
            .marks
            .pop()
            .ok_or_else(|| anyhow!("pickle has no mark at byte {}", self.pos))?;
        Ok(self.stack.split_off(m))
    }
    fn top(&self) -> Result<usize> {
        self.stack
            .last()
            .copied()
            .ok_or_else(|| anyhow!("pickle stack empty at byte {}", self.pos))
    }
    fn add_items(&mut self, target: usize, kv: Vec<usize>) -> Result<()> {
        let pairs: Vec<(usize, usize)> = kv.chunks(2).map(|c| (c[0], c[1])).collect();
        if kv.len() % 2 != 0 {
            bail!("SETITEMS with an odd number of values");
        }
        match &mut self.arena[target] {
            Node::Dict(d) | Node::Object { items: d, .. } => d.extend(pairs),
            _ => bail!("SETITEM on something that is not a dict"),
        }
        Ok(())
    }
    fn append(&mut self, target: usize, v: Vec<usize>) -> Result<()> {
        match &mut self.arena[target] {
            Node::List(l) => l.extend(v),
            // A list subclass's items are not needed for a config.
            Node::Object { .. } => {}
            _ => bail!("APPEND on something that is not a list"),
        }
        Ok(())
    }
    fn global_name(&self, i: usize) -> String {
        match &self.arena[i] {
            Node::Val(PyVal::Global(g)) => g.clone(),
            _ => "<call>".into(),
        }
    }
    fn value(&self, i: usize, depth: usize) -> PyVal {
        if depth > 64 {
            return PyVal::Opaque("<too deep>".into());
        }
        match &self.arena[i] {
            Node::Val(v) => v.clone(),
            Node::List(l) => PyVal::List(l.iter().map(|&j| self.value(j, depth + 1)).collect()),
            Node::Dict(d) => PyVal::Dict(
                d.iter()
                    .map(|&(k, v)| (self.value(k, depth + 1), self.value(v, depth + 1)))
                    .collect(),
            ),
            Node::Object {
                class,
                items,
                state,
            } => PyVal::Object {
                class: class.clone(),
                items: items
                    .iter()
                    .map(|&(k, v)| (self.value(k, depth + 1), self.value(v, depth + 1)))
                    .collect(),
                state: Box::new(state.map_or(PyVal::None, |s| self.value(s, depth + 1))),
            },
        }
    }
}

/// Walks a pickle (protocols 2 to 5, what `torch.save` writes) to its top-level value.
/// Calls (`REDUCE`) are not run: `OrderedDict()` becomes a dict, anything else an opaque value;
/// `NEWOBJ` builds an object whose `BUILD` state is kept. Persistent ids (tensor storages) are
/// opaque.
pub fn unpickle(b: &[u8]) -> Result<PyVal> {
    let mut w = Walk {
        b,
        pos: 0,
        arena: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    loop {
        let op = w.take(1)?[0];
        match op {
            0x80 => {
                w.take(1)?;
            }
            0x95 => {
                w.take(8)?;
            }
            b'.' => {
                let top = w.pop()?;
                return Ok(w.value(top, 0));
            }
            b'(' => w.marks.push(w.stack.len()),
            b'}' => w.push(Node::Dict(Vec::new())),
            b']' => w.push(Node::List(Vec::new())),
            b')' => w.push(Node::List(Vec::new())),
            0x8f => w.push(Node::List(Vec::new())),
            b'N' => w.push(Node::Val(PyVal::None)),
            0x88 => w.push(Node::Val(PyVal::Bool(true))),
            0x89 => w.push(Node::Val(PyVal::Bool(false))),
            b'J' => {
                let v = w.uint(4)? as u32 as i32 as i64;
                w.push(Node::Val(PyVal::Int(v)));
            }
            b'K' => {
                let v = w.uint(1)? as i64;
                w.push(Node::Val(PyVal::Int(v)));
            }
            b'M' => {
                let v = w.uint(2)? as i64;
                w.push(Node::Val(PyVal::Int(v)));
            }
            0x8a | 0x8b => {
                let n = if op == 0x8a { w.uint(1)? } else { w.uint(4)? } as usize;
                let s = w.take(n)?.to_vec();
                let v = if n == 0 {
                    PyVal::Int(0)
                } else if n <= 8 {
                    let mut x: i64 = if s[n - 1] & 0x80 != 0 { -1 } else { 0 };
                    for &byte in s.iter().rev() {
                        x = (x << 8) | byte as i64;
                    }
                    PyVal::Int(x)
                } else {
                    PyVal::Opaque("int wider than 64 bits".into())
                };
                w.push(Node::Val(v));
            }
            b'I' => {
                let l = w.line()?;
                let v = match l.as_str() {
                    "00" => PyVal::Bool(false),
                    "01" => PyVal::Bool(true),
                    s => PyVal::Int(s.parse().map_err(|_| anyhow!("bad INT {s:?}"))?),
                };
                w.push(Node::Val(v));
            }
            b'G' => {
                let s = w.take(8)?;
                let v = f64::from_be_bytes(s.try_into().unwrap());
                w.push(Node::Val(PyVal::Float(v)));
            }
            b'X' | 0x8c | 0x8d | b'T' | b'U' | b'B' | b'C' | 0x8e => {
                let n = match op {
                    0x8c | b'U' | b'C' => w.uint(1)?,
                    0x8d | 0x8e => w.uint(8)?,
                    _ => w.uint(4)?,
                } as usize;
                let s = w.take(n)?.to_vec();
                let v = match op {
                    b'B' | b'C' | 0x8e => PyVal::Bytes(s),
                    _ => PyVal::Str(String::from_utf8_lossy(&s).into_owned()),
                };
                w.push(Node::Val(v));
            }
            b'c' => {
                let m = w.line()?;
                let n = w.line()?;
                w.push(Node::Val(PyVal::Global(format!("{m}.{n}"))));
            }
            0x93 => {
                let n = w.pop()?;
                let m = w.pop()?;
                let s = |i: usize| match &w.arena[i] {
                    Node::Val(PyVal::Str(s)) => Ok(s.clone()),
                    _ => Err(anyhow!("STACK_GLOBAL expects two strings")),
                };
                let g = format!("{}.{}", s(m)?, s(n)?);
                w.push(Node::Val(PyVal::Global(g)));
            }
            b't' => {
                let items = w.pop_mark()?;
                w.push(Node::List(items));
            }
            b'l' => {
                let items = w.pop_mark()?;
                w.push(Node::List(items));
            }
            0x91 => {
                let items = w.pop_mark()?;
                w.push(Node::List(items));
            }
            b'd' => {
                let kv = w.pop_mark()?;
                w.push(Node::Dict(Vec::new()));
                let d = w.top()?;
                w.add_items(d, kv)?;
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(w.pop()?);
                }
                items.reverse();
                w.push(Node::List(items));
            }
            b's' => {
                let v = w.pop()?;
                let k = w.pop()?;
                let d = w.top()?;
                w.add_items(d, vec![k, v])?;
            }
            b'u' => {
                let kv = w.pop_mark()?;
                let d = w.top()?;
                w.add_items(d, kv)?;
            }
            b'a' => {
                let v = w.pop()?;
                let l = w.top()?;
                w.append(l, vec![v])?;
            }
            b'e' | 0x90 => {
                let v = w.pop_mark()?;
                let l = w.top()?;
                w.append(l, v)?;
            }
            b'R' => {
                let _args = w.pop()?;
                let f = w.pop()?;
                let name = w.global_name(f);
                let node = if name == "collections.OrderedDict" {
                    // Called with () here; its items follow as SETITEMS.
                    Node::Dict(Vec::new())
                } else {
                    Node::Val(PyVal::Opaque(name))
                };
                w.push(node);
            }
            0x81 | 0x92 => {
                if op == 0x92 {
                    w.pop()?; // kwargs
                }
                let _args = w.pop()?;
                let cls = w.pop()?;
                let class = w.global_name(cls);
                w.push(Node::Object {
                    class,
                    items: Vec::new(),
                    state: None,
                });
            }
            b'b' => {
                let state = w.pop()?;
                let obj = w.top()?;
                if let Node::Object { state: s, .. } = &mut w.arena[obj] {
                    *s = Some(state);
                }
                // BUILD on anything else (an OrderedDict's _metadata, an opaque call) is
                // not needed for a config.
            }
            b'Q' => {
                w.pop()?;
                w.push(Node::Val(PyVal::Opaque("persistent id".into())));
            }
            b'P' => {
                w.line()?;
                w.push(Node::Val(PyVal::Opaque("persistent id".into())));
            }
            b'q' | b'r' | 0x94 | b'p' => {
                let idx = match op {
                    b'q' => w.uint(1)?,
                    b'r' => w.uint(4)?,
                    b'p' => w.line()?.parse()?,
                    _ => w.memo.len() as u64,
                };
                let top = w.top()?;
                w.memo.insert(idx, top);
            }
            b'h' | b'j' | b'g' => {
                let idx = match op {
                    b'h' => w.uint(1)?,
                    b'j' => w.uint(4)?,
                    _ => w.line()?.parse()?,
                };
                let i = *w
                    .memo
                    .get(&idx)
                    .ok_or_else(|| anyhow!("pickle memo has no entry {idx}"))?;
                w.stack.push(i);
            }
            b'0' => {
                w.pop()?;
            }
            b'1' => {
                w.pop_mark()?;
            }
            b'2' => {
                let t = w.top()?;
                w.stack.push(t);
            }
            other => bail!(
                "unsupported pickle opcode 0x{other:02x} at byte {}",
                w.pos - 1
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names of every tensor of a 2-layer model map onto the reference's state_dict keys.
    #[test]
    fn names_map_onto_the_reference_layout() {
        let n = |s: &str| reference_name(s, 2).unwrap();
        assert_eq!(n("encoder.conv1.weight"), "encoder.convs.1.conv.weight");
        assert_eq!(n("decoder.convt0.bias"), "decoder.convts.0.convt.bias");
        assert_eq!(
            n("encoder.res_stack.1.bn3.running_var"),
            "encoder.res_stack.1.block.6.running_var"
        );
        assert_eq!(
            n("decoder.res_stack.0.attn_1.fc.weight"),
            "decoder.res_stack.0.block.8.attn_t.fc.weight"
        );
        assert_eq!(
            n("decoder.res_stack.0.attn_3.w_qs.weight"),
            "decoder.res_stack.0.block.8.attn_w.w_qs.weight"
        );
        assert_eq!(
            n("encoder.res_stack.bn.weight"),
            "encoder.res_stack.2.weight"
        );
        assert_eq!(n("pre_vq_conv.bias"), "pre_vq_conv.conv.bias");
        assert_eq!(n("codebook.N"), "codebook.N");
    }
}
