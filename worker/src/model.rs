//! The notebook's generator (`TetrisModel`) and discriminator
//! (`TetrisDiscriminator`), with PyTorch's `state_dict` names, for a pack of
//! trials: built for one trial from its seed, or stacked from several.

use candle_core::{Device, Result, Tensor, Var};
use rand::Rng;

use crate::init::InitScheme;
use crate::layers::{
    Act, BatchNorm, Builder, Conv, Linear, Pass, Taken, Weights, flatten_chw, max_pool2, relu,
    softmax_channels,
};
use crate::tensors::NamedTensors;
use crate::tetris::{COLS, ROWS};

/// Noise inputs of the generator.
pub const Z_DIM: usize = 4;
const BOARD: (usize, usize) = (ROWS, COLS);
const POOLED: (usize, usize) = (ROWS / 2, COLS / 2);

/// A conv followed by BatchNorm and ReLU.
#[derive(Debug)]
struct ConvBnRelu {
    conv: Conv,
    bn: BatchNorm,
}

impl ConvBnRelu {
    fn new(
        b: &mut Builder<'_, '_>,
        seq: &str,
        at: usize,
        c_in: usize,
        hw: (usize, usize),
    ) -> Result<Self> {
        Ok(Self {
            conv: Conv::new(b, &format!("{seq}.{at}"), c_in, 16, 3, 1, false, false, hw)?,
            bn: BatchNorm::new(b, &format!("{seq}.{}", at + 1), 16)?,
        })
    }

    fn forward(&self, x: &Act, pass: Pass) -> Result<Act> {
        self.bn.forward(&self.conv.forward(x, pass)?, pass, true)
    }

    /// [`ConvBnRelu::forward`] of `x` with the per-item features `v`
    /// appended to every position (see [`Conv::forward_appended`]).
    fn forward_appended(&self, x: &Act, v: &Tensor, pass: Pass) -> Result<Act> {
        self.bn
            .forward(&self.conv.forward_appended(x, v, pass)?, pass, true)
    }
}

/// The generator: predicts the next board from a board and noise.
#[derive(Debug)]
pub struct Generator {
    loc: [ConvBnRelu; 2],
    glob: [ConvBnRelu; 2],
    glob_linear: Linear,
    /// Per trial, the floor applied after `glob.9`: 0 (a ReLU, the smart
    /// variant) or -inf (none); `(K, 1)`.
    glob_floor: Tensor,
    glob_relu: Vec<bool>,
    head: [ConvBnRelu; 3],
    out: Conv,
    /// Every parameter and BatchNorm buffer, under PyTorch's names.
    pub tensors: NamedTensors,
}

impl Generator {
    /// Builds the generator of one trial with `scheme`; `glob_relu` adds the
    /// smart variant's ReLU after `glob.9`.
    pub fn new<R: Rng>(
        scheme: InitScheme,
        glob_relu: bool,
        rng: &mut R,
        device: &Device,
    ) -> Result<Self> {
        Self::build(Weights::Drawn { rng, scheme }, vec![glob_relu], device)
    }

    /// One generator for the pack of `trials`, their tensors stacked.
    pub fn stack(trials: &[&Generator]) -> Result<Self> {
        let nets: Vec<&NamedTensors> = trials.iter().map(|g| &g.tensors).collect();
        let glob_relu = trials.iter().flat_map(|g| g.glob_relu.clone()).collect();
        let device = trials[0].glob_floor.device().clone();
        Self::build(Weights::Taken(Taken::Stacked(&nets)), glob_relu, &device)
    }

    /// A copy of trials `start..start + len` of this pack.
    pub fn select(&self, start: usize, len: usize) -> Result<Self> {
        let weights = Weights::Taken(Taken::Slice {
            net: &self.tensors,
            start,
            len,
        });
        let glob_relu = self.glob_relu[start..start + len].to_vec();
        Self::build(weights, glob_relu, &self.glob_floor.device().clone())
    }

    fn build(weights: Weights<'_>, glob_relu: Vec<bool>, device: &Device) -> Result<Self> {
        let mut tensors = NamedTensors::default();
        let b = &mut Builder {
            tensors: &mut tensors,
            weights,
            device,
        };
        let loc = [
            ConvBnRelu::new(b, "loc", 0, 2 + Z_DIM, BOARD)?,
            ConvBnRelu::new(b, "loc", 3, 16, BOARD)?,
        ];
        let glob = [
            ConvBnRelu::new(b, "glob", 0, 16, BOARD)?,
            ConvBnRelu::new(b, "glob", 4, 16, POOLED)?,
        ];
        let glob_linear = Linear::new(b, "glob.9", 160, 10, false)?;
        let head = [
            ConvBnRelu::new(b, "head", 0, 26, BOARD)?,
            ConvBnRelu::new(b, "head", 3, 16, BOARD)?,
            ConvBnRelu::new(b, "head", 6, 16, BOARD)?,
        ];
        let out = Conv::new(b, "head.9", 16, 2, 1, 0, true, true, BOARD)?;
        let floors: Vec<f32> = glob_relu
            .iter()
            .map(|&r| if r { 0.0 } else { f32::NEG_INFINITY })
            .collect();
        let glob_floor = Tensor::from_vec(floors, (glob_relu.len(), 1), device)?;
        Ok(Self {
            loc,
            glob,
            glob_linear,
            glob_floor,
            glob_relu,
            head,
            out,
            tensors,
        })
    }

    /// Trials in the pack.
    pub fn pack(&self) -> usize {
        self.glob_relu.len()
    }

    /// `x`: boards `(K*B, 220, 2)` one-hot, trial after trial; `z`:
    /// `(K*B, 4)`. Returns the softmax probabilities `(K*B, 220, 2)`.
    pub fn forward(&self, x: &Tensor, z: &Tensor, pass: Pass) -> Result<Tensor> {
        let kb = x.dim(0)?;
        let pack = self.pack();
        // The noise, and later the glob features, are the same at every
        // position: appended as channels without repeating them.
        let board = Act {
            t: x.clone(),
            h: ROWS,
            w: COLS,
        };
        let h = self.loc[0].forward_appended(&board, z, pass)?;
        let h = self.loc[1].forward(&h, pass)?;
        let g = self.glob[0].forward(&h, pass)?;
        let g = self.glob[1].forward(&max_pool2(&g)?, pass)?;
        let g = self
            .glob_linear
            .forward(&flatten_chw(&max_pool2(&g)?)?, pass)?
            .reshape((pack, kb / pack, 10))?
            .broadcast_maximum(&self.glob_floor.unsqueeze(2)?)?
            .reshape((kb, 10))?;
        let [first, rest @ ..] = &self.head;
        let mut y = first.forward_appended(&h, &g, pass)?;
        for layer in rest {
            y = layer.forward(&y, pass)?;
        }
        Ok(softmax_channels(&self.out.forward(&y, pass)?)?.t)
    }
}

/// The discriminator: scores (board, next board) pairs with logits.
#[derive(Debug)]
pub struct Discriminator {
    conv0: Conv,
    conv3: Conv,
    conv5: Conv,
    fc8: Linear,
    fc10: Linear,
    /// Every parameter and BatchNorm buffer, under PyTorch's names.
    pub tensors: NamedTensors,
}

impl Discriminator {
    /// Builds the discriminator of one trial with `scheme`.
    pub fn new<R: Rng>(scheme: InitScheme, rng: &mut R, device: &Device) -> Result<Self> {
        Self::build(Weights::Drawn { rng, scheme }, device)
    }

    /// One discriminator for the pack of `trials`, their tensors stacked.
    pub fn stack(trials: &[&Discriminator]) -> Result<Self> {
        let nets: Vec<&NamedTensors> = trials.iter().map(|d| &d.tensors).collect();
        let device = trials[0].fc10_bias().device().clone();
        Self::build(Weights::Taken(Taken::Stacked(&nets)), &device)
    }

    /// A copy of trials `start..start + len` of this pack.
    pub fn select(&self, start: usize, len: usize) -> Result<Self> {
        let weights = Weights::Taken(Taken::Slice {
            net: &self.tensors,
            start,
            len,
        });
        Self::build(weights, &self.fc10_bias().device().clone())
    }

    fn build(weights: Weights<'_>, device: &Device) -> Result<Self> {
        let mut tensors = NamedTensors::default();
        let b = &mut Builder {
            tensors: &mut tensors,
            weights,
            device,
        };
        Ok(Self {
            conv0: Conv::new(b, "body.0", 4, 16, 3, 1, true, false, BOARD)?,
            conv3: Conv::new(b, "body.3", 16, 16, 3, 0, true, false, POOLED)?,
            conv5: Conv::new(b, "body.5", 16, 16, 3, 0, true, false, (9, 3))?,
            fc8: Linear::new(b, "body.8", 112, 16, false)?,
            fc10: Linear::new(b, "body.10", 16, 1, true)?,
            tensors,
        })
    }

    fn fc10_bias(&self) -> &Var {
        self.tensors.get("body.10.bias").expect("registered")
    }

    /// Trials in the pack.
    pub fn pack(&self) -> usize {
        self.fc10_bias().dim(0).expect("a pack dimension")
    }

    /// `x`, `y`: `(K*B, 220, 2)`, trial after trial. Returns logits `(K*B)`.
    pub fn forward(&self, x: &Tensor, y: &Tensor, pass: Pass) -> Result<Tensor> {
        let h = Act {
            t: Tensor::cat(&[x, y], 2)?,
            h: ROWS,
            w: COLS,
        };
        let h = max_pool2(&relu(&self.conv0.forward(&h, pass)?)?)?;
        let h = relu(&self.conv3.forward(&h, pass)?)?;
        let h = relu(&self.conv5.forward(&h, pass)?)?;
        let h = self.fc8.forward(&flatten_chw(&h)?, pass)?.relu()?;
        self.fc10.forward(&h, pass)?.flatten_all()
    }
}
