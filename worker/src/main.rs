use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use worker::bench::{self, BenchOptions};
use worker::datagen::{self, GeneratedSpec, Pairing};
use worker::dataset::DatasetSpec;
use worker::init::InitScheme;
use worker::runner::RunArgs;
use worker::standalone::{self, RunOptions, TrialFile};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Experiment 025 worker: trains the Tetris GAN.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a recordings dataset with the built-in Tetris engine.
    Datagen {
        /// Output directory; DIR/train and DIR/test must be new or empty.
        #[arg(long)]
        out: PathBuf,
        /// Seed of the games and of the train/test split.
        #[arg(long)]
        seed: u64,
        /// Items in the train split.
        #[arg(long)]
        train: usize,
        /// Items in the test split.
        #[arg(long)]
        test: usize,
        /// How consecutive boards are paired into items.
        #[arg(long, default_value_t = Pairing::NonOverlapping)]
        pairs: Pairing,
    },
    /// Train one trial locally and print one JSON line of metrics per epoch.
    Train(Box<TrainArgs>),
    /// Serve a coordinator: lease trials, train them, stream their metrics.
    Run(RunArgs),
    /// Time whole epochs (batch 4) on recordings, optionally beside the
    /// PyTorch reference, and print the figures and their ratio as JSON.
    Bench {
        /// Recordings directory with train/ and test/.
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 3)]
        epochs: u32,
        /// Init scheme of both networks.
        #[arg(long, default_value = "smart")]
        init: InitScheme,
        /// The reference's bench_torch.py, run on the same data and threads
        /// (with --packs: one trial per process, a process per thread).
        #[arg(long)]
        torch: Option<PathBuf>,
        /// The Python interpreter for --torch.
        #[arg(long, default_value = "python3")]
        python: String,
        /// CPU threads, ours and PyTorch's alike.
        #[arg(long, default_value = "1")]
        threads: std::num::NonZeroUsize,
        /// Where ours trains: cpu or cuda:N (CUDA needs --features cuda).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Sweep throughput instead: trial-epochs per second of packs of
        /// these sizes (e.g. 1,2,4,8,16,32,64).
        #[arg(long, value_delimiter = ',')]
        packs: Option<Vec<usize>>,
        /// The reference's bench_torch_packed.py, run for the same packs.
        #[arg(long, requires = "packs")]
        torch_packed: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct TrainArgs {
    /// A YAML file with any of the settings below (flags win).
    #[arg(long)]
    config: Option<PathBuf>,
    /// A recordings directory holding train/ and test/.
    #[arg(long, conflicts_with = "generate")]
    data: Option<PathBuf>,
    /// A generated dataset: SEED:TRAIN:TEST (items per split).
    #[arg(long, value_parser = parse_generated)]
    generate: Option<DatasetSpec>,
    /// Init scheme of both networks: default, smart or
    /// kaiming_{fan_in|fan_out}[_normal][_zero_bias].
    #[arg(long, conflicts_with_all = ["gen_init", "disc_init"])]
    init: Option<String>,
    /// Init scheme of the generator.
    #[arg(long)]
    gen_init: Option<String>,
    /// Init scheme of the discriminator.
    #[arg(long)]
    disc_init: Option<String>,
    /// Add the ReLU after the generator's glob.9 (implied by smart init).
    #[arg(long)]
    glob_relu: bool,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    beta1: Option<f64>,
    #[arg(long)]
    beta2: Option<f64>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    epochs: Option<u32>,
    #[arg(long)]
    seed: Option<u64>,
    /// cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Write the JSON lines here instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Save the whole trainer state here at the end.
    #[arg(long)]
    save: Option<PathBuf>,
    /// Continue from a state saved with --save.
    #[arg(long)]
    resume: Option<PathBuf>,
}

fn parse_generated(s: &str) -> Result<DatasetSpec, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let [seed, train, test] = parts[..] else {
        return Err("expected SEED:TRAIN:TEST".into());
    };
    let number = |v: &str| v.parse::<u64>().map_err(|e| format!("{v:?}: {e}"));
    Ok(DatasetSpec::Generated {
        seed: number(seed)?,
        train: number(train)? as usize,
        test: number(test)? as usize,
        pairing: Pairing::NonOverlapping,
    })
}

fn train(args: TrainArgs) -> Result<()> {
    let mut file = match &args.config {
        Some(path) => TrialFile::read(path)?,
        None => TrialFile::default(),
    };
    let recordings = args.data.map(|path| DatasetSpec::Recordings { path });
    file.dataset = recordings.or(args.generate).or(file.dataset);
    file.gen_init = args.gen_init.or(args.init.clone()).or(file.gen_init);
    file.disc_init = args.disc_init.or(args.init).or(file.disc_init);
    if args.glob_relu {
        file.glob_relu = Some(true);
    }
    file.lr = args.lr.or(file.lr);
    file.beta1 = args.beta1.or(file.beta1);
    file.beta2 = args.beta2.or(file.beta2);
    file.batch_size = args.batch_size.or(file.batch_size);
    file.epochs = args.epochs.or(file.epochs);
    file.seed = args.seed.or(file.seed);
    let (dataset, config) = file.resolve()?;
    standalone::run(
        &dataset,
        config,
        &RunOptions {
            device: args.device,
            out: args.out,
            save: args.save,
            resume: args.resume,
        },
    )
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().command {
        Command::Datagen {
            out,
            seed,
            train,
            test,
            pairs,
        } => {
            let data = datagen::generate(&GeneratedSpec {
                seed,
                train,
                test,
                pairing: pairs,
            });
            datagen::write_split(&data.train, &out.join("train"))?;
            datagen::write_split(&data.test, &out.join("test"))?;
            println!("{}", datagen::summary("train", &data.train));
            println!("{}", datagen::summary("test", &data.test));
        }
        Command::Train(args) => train(*args)?,
        Command::Run(args) => args.serve()?,
        Command::Bench {
            data,
            epochs,
            init,
            torch,
            python,
            threads,
            device,
            packs,
            torch_packed,
        } => bench::run(&BenchOptions {
            data,
            epochs,
            init,
            torch_script: torch,
            python,
            threads,
            device,
            packs,
            torch_packed,
        })?,
    }
    Ok(())
}
