//! The notebook's generator (`TetrisModel`) and discriminator
//! (`TetrisDiscriminator`), with PyTorch's `state_dict` names.

use candle_core::{Device, Result, Tensor};
use rand::Rng;

use crate::init::InitScheme;
use crate::layers::{
    Act, BatchNorm, Builder, Conv, Linear, Pass, flatten_chw, max_pool2, relu, softmax_channels,
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
    fn new<R: Rng>(
        b: &mut Builder<'_, R>,
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
}

/// The generator: predicts the next board from a board and noise.
#[derive(Debug)]
pub struct Generator {
    loc: [ConvBnRelu; 2],
    glob: [ConvBnRelu; 2],
    glob_linear: Linear,
    glob_relu: bool,
    head: [ConvBnRelu; 3],
    out: Conv,
    /// Every parameter and BatchNorm buffer, under PyTorch's names.
    pub tensors: NamedTensors,
}

impl Generator {
    /// Builds the generator with `scheme`; `glob_relu` adds the smart
    /// variant's ReLU after `glob.9`.
    pub fn new<R: Rng>(
        scheme: InitScheme,
        glob_relu: bool,
        rng: &mut R,
        device: &Device,
    ) -> Result<Self> {
        let mut tensors = NamedTensors::default();
        let b = &mut Builder {
            tensors: &mut tensors,
            rng,
            scheme,
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
        Ok(Self {
            loc,
            glob,
            glob_linear,
            glob_relu,
            head,
            out,
            tensors,
        })
    }

    /// `x`: boards `(B, 220, 2)` one-hot; `z`: `(B, 4)`. Returns the softmax
    /// probabilities `(B, 220, 2)`.
    pub fn forward(&self, x: &Tensor, z: &Tensor, pass: Pass) -> Result<Tensor> {
        let (b, hw, _) = x.dims3()?;
        let noise = z.reshape((b, 1, Z_DIM))?.broadcast_as((b, hw, Z_DIM))?;
        let mut h = Act {
            t: Tensor::cat(&[x, &noise], 2)?,
            h: ROWS,
            w: COLS,
        };
        for layer in &self.loc {
            h = layer.forward(&h, pass)?;
        }
        let g = self.glob[0].forward(&h, pass)?;
        let g = self.glob[1].forward(&max_pool2(&g)?, pass)?;
        let mut g = self
            .glob_linear
            .forward(&flatten_chw(&max_pool2(&g)?)?, pass)?;
        if self.glob_relu {
            g = g.relu()?;
        }
        let g = g.reshape((b, 1, 10))?.broadcast_as((b, hw, 10))?;
        let mut y = Act {
            t: Tensor::cat(&[&h.t, &g], 2)?,
            h: ROWS,
            w: COLS,
        };
        for layer in &self.head {
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
    /// Builds the discriminator with `scheme`.
    pub fn new<R: Rng>(scheme: InitScheme, rng: &mut R, device: &Device) -> Result<Self> {
        let mut tensors = NamedTensors::default();
        let b = &mut Builder {
            tensors: &mut tensors,
            rng,
            scheme,
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

    /// `x`, `y`: `(B, 220, 2)`. Returns logits `(B,)`.
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
