"""The demo catalog: the OPT family, with real file names and small synthetic contents."""

from __future__ import annotations

import hashlib
import math

OPT_175B_SHARDS = [f"checkpoint_last-model_part-{part}-shard{shard}.pt" for part in range(8) for shard in range(124)]

TOKENIZER_FILES = [
    "config.json",
    "generation_config.json",
    "merges.txt",
    "special_tokens_map.json",
    "tokenizer_config.json",
    "vocab.json",
]


def _weights(shards: int) -> list[str]:
    if shards == 1:
        return ["pytorch_model.bin"]
    return [f"pytorch_model-{i:05d}-of-{shards:05d}.bin" for i in range(1, shards + 1)]


# (name, parameters, access, weight shards)
OPT_FAMILY = [
    ("opt-125m", 125_000_000, "open", 1),
    ("opt-350m", 350_000_000, "open", 1),
    ("opt-1.3b", 1_300_000_000, "open", 1),
    ("opt-2.7b", 2_700_000_000, "open", 1),
    ("opt-6.7b", 6_700_000_000, "open", 2),
    ("opt-13b", 13_000_000_000, "open", 3),
    ("opt-30b", 30_000_000_000, "open", 7),
    ("opt-66b", 66_000_000_000, "gated", 14),
]


def release_files(name: str) -> list[str]:
    if name == "opt-175b":
        return list(OPT_175B_SHARDS)
    shards = next(s for n, _, _, s in OPT_FAMILY if n == name)
    return TOKENIZER_FILES + _weights(shards)


def releases() -> list[dict]:
    rows = [
        {"repo_id": f"facebook/{name}", "display_name": name.upper(), "parameters": params, "access": access}
        for name, params, access, _ in OPT_FAMILY
    ]
    rows.append(
        {"repo_id": "facebook/opt-175b", "display_name": "OPT-175B", "parameters": 175_000_000_000, "access": "gated"}
    )
    for row in rows:
        row["description"] = DESCRIPTION.format(name=row["display_name"])
        row["description_zh_hans"] = DESCRIPTION_ZH_HANS.format(name=row["display_name"])
    return rows


# The model card, in Markdown (rendered and sanitized on the release page).
DESCRIPTION = """\
**Open Pre-trained Transformer, {name}**: a decoder-only language model trained on publicly available data.

## Intended use
- Research on large language models: capabilities, limitations, bias and safety.
- Not for deployment in products; see the license for what it allows.

## Files
Weights, configuration and tokenizer files, each with its SHA-256. *Demo release*: file names and counts are \
real, contents are synthetic.

## Citation
Zhang et al., [OPT: Open Pre-trained Transformer Language Models](https://arxiv.org/abs/2205.01068), 2022.
"""


class SyntheticFile:
    """A deterministic byte stream of a given size, generated in chunks so any size uses constant memory."""

    BLOCK = 1024 * 1024

    def __init__(self, seed: str, size: int):
        self.seed = seed.encode()
        self.size = size
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        remaining = self.size - self.pos
        if remaining <= 0:
            return b""
        n = remaining if n is None or n < 0 else min(n, remaining)
        out = bytearray()
        while len(out) < n:
            block, offset = divmod(self.pos, self.BLOCK)
            end = min(self.BLOCK, offset + n - len(out))
            # A shorter SHAKE output is a prefix of a longer one: only the bytes up to `end` are made.
            data = hashlib.shake_256(self.seed + block.to_bytes(8, "big")).digest(end)
            take = data[offset:end]
            out += take
            self.pos += len(take)
        return bytes(out)


def synthetic_size(path: str, base: int) -> int:
    """Weight files get the base size (varied a little, so sizes differ); small text files stay small."""
    if path.endswith((".pt", ".bin")):
        return base + int(hashlib.sha256(path.encode()).hexdigest()[:4], 16) % 512
    return 256 + len(path) * 16


OPT_LICENSE_TEXT = """\
OPT-175B NON-COMMERCIAL RESEARCH LICENSE (demo text written for this portal)

1. What you receive. The licensor grants you a personal, non-exclusive, non-transferable, royalty-free
   licence to download, copy, run and modify the OPT-175B model weights and code ("the Materials") for
   non-commercial research only.

2. Non-commercial research only. You may not use the Materials, or anything derived from them, for any
   commercial purpose, for products or services offered to others, or in production systems. Research
   results may be published.

3. No redistribution. You may not share, sell, sublicense or otherwise make the Materials available to
   anyone else. Colleagues at your institution apply for their own access, unless a lab grant covers
   them: each covered member accepts this license personally and is bound by it as you are.

4. Responsible use. You will not use the Materials to harm people, to generate disinformation, to
   surveil or to discriminate, nor in violation of any law. You will report to the licensor any
   vulnerability, misuse or harmful behaviour of the model that you find.

5. Attribution. Publications that use the Materials will cite the OPT paper.

6. Security of access. Your access is personal. Keep your API tokens secret; the licensor may revoke
   access at any time, and revocation ends this licence.

7. No warranty. The Materials are provided "as is", without warranty of any kind; the licensor is not
   liable for any damages arising from their use.

8. Termination. This licence ends automatically if you breach it; you must then delete every copy of
   the Materials.
"""


# The demo releases' own questions (access.services.question_create fields), on top of the standard form.
RELEASE_QUESTIONS = {
    "opt-175b": [
        (
            "compute",
            {
                "kind": "choice",
                "label_en": "Where will you run the model?",
                "label_zh": "您将在哪里运行该模型？",
                "help_en": "OPT-175B needs about 350 GB of accelerator memory in half precision.",
                "help_zh": "OPT-175B 以半精度运行约需 350 GB 加速器显存。",
                "required": True,
                "options": {
                    "choices": [
                        {
                            "value": "university_cluster",
                            "label_en": "University or institute cluster",
                            "label_zh": "大学或研究所集群",
                        },
                        {"value": "national_hpc", "label_en": "National HPC centre", "label_zh": "国家高性能计算中心"},
                        {
                            "value": "cloud",
                            "label_en": "Cloud provider (research credits)",
                            "label_zh": "云服务商（科研额度）",
                        },
                        {"value": "other", "label_en": "Other", "label_zh": "其他"},
                    ]
                },
            },
        ),
        (
            "no_redistribution",
            {
                "kind": "attestation",
                "label_en": "I will not share the weights, or models fine-tuned from them, outside my own use",
                "label_zh": "我不会在个人使用范围之外分享这些权重或由其微调得到的模型",
                "help_en": "Colleagues apply for their own access.",
                "help_zh": "同事需要各自申请访问权限。",
                "required": True,
            },
        ),
    ],
    "opt-66b": [
        (
            "ethics_approval",
            {
                "kind": "file",
                "label_en": "Ethics or IRB approval letter",
                "label_zh": "伦理或 IRB 审批函",
                "help_en": "A PDF, PNG or JPEG of at most 5 MiB; only reviewers can open it.",
                "help_zh": "PDF、PNG 或 JPEG 文件，不超过 5 MiB；仅审核员可以查看。",
                "required": True,
                "options": {"max_size": 5 * 1024 * 1024, "types": ["pdf", "png", "jpeg"]},
            },
        ),
    ],
}


def release_questions(name: str) -> list[tuple[str, dict]]:
    return RELEASE_QUESTIONS.get(name, [])


DESCRIPTION_ZH_HANS = """\
**Open Pre-trained Transformer（开放预训练 Transformer），{name}**：基于公开数据训练的仅解码器语言模型。

## 预期用途
- 大语言模型研究：能力、局限、偏见与安全。
- 不用于产品部署；允许的用途以许可协议为准。

## 文件
权重、配置和分词器文件，均附 SHA-256。*演示版本*：文件名和数量与真实版本一致，内容为合成数据。

## 引用
Zhang 等，[OPT: Open Pre-trained Transformer Language Models](https://arxiv.org/abs/2205.01068)，2022。
"""


# The demo institution: the demo OpenID Provider (`make run`, http://127.0.0.1:8001/o) signs its people in, and
# its domain verifies their addresses. The ROR id has ROR's shape but names no real organization.
DEMO_INSTITUTION = {
    "ror_id": "0demoun01",
    "name": "Demo University",
    "domain": "uni.example",
    "issuer": "http://127.0.0.1:8001/o",
    # Demo University's signing official (a person of the demo provider): `make run` appoints her once she has
    # signed in through it (an appointment needs her account, which her first sign-in creates).
    "official": "olive.official@uni.example",
}

# The demo's decision rules (`make run`): verified faculty of Demo University get OPT-175B in seconds; everyone
# else (the demo student among them), and every OPT-66B request (it asks for an upload), waits for a reviewer.
DEMO_RULES = {
    "facebook/opt-175b": [
        {
            "action": "approve",
            "conditions": {"affiliation_kinds": ["faculty"], "institutions": [DEMO_INSTITUTION["ror_id"]]},
            "note": "Verified faculty of Demo University",
        }
    ],
}

# --- OPT-175B's documents and what it takes to run it (demo texts written for this portal, after the OPT paper,
# Zhang et al. 2022, arXiv:2205.01068, and its published logbook) ------------------------------------------------

OPT_175B_FOOTPRINT = {
    "weights_dtype": "fp16",
    "co2_eq_emissions": 75_000_000,  # grams: "75 tons CO2eq" (the paper, section 6)
    "co2_source": "OPT paper (Zhang et al. 2022, arXiv:2205.01068), section 6",
    "co2_training_type": "pre-training",
    "co2_geographical_location": "",
    "co2_hardware_used": "992 × 80 GB NVIDIA A100",
}

OPT_175B_LOGBOOK = """\
*Demo document written for this portal, after the logbook published beside OPT-175B.*

# OPT-175B training logbook (excerpts)

## Setup
- 992 × 80 GB A100 GPUs, fully sharded data parallel with Megatron-LM tensor parallelism (8-way).
- About 147 TFLOP/s per GPU; bf16 activations, fp32 master weights in the optimizer, weights saved in fp16.

## Run 11 (the run that finished)
| date | event |
|---|---|
| 2021-11-05 | Run 11.0 starts from scratch with a lower learning rate after loss divergences in runs 1–10. |
| 2021-11-11 | Hardware failure on one node; restarted from the last checkpoint (lost 2 hours). |
| 2021-11-17 | Loss spike; rolled back 1,000 steps and lowered the learning rate. |
| 2021-12-03 | Optimizer state corrupted on restart; restored from the previous checkpoint. |
| 2022-01-06 | Training stopped after about 180B tokens. |

In all, more than 35 manual restarts and over 100 hosts cycled out over two months.
"""

OPT_175B_TRAINING_CONTENT = """\
*Demo document written for this portal, on the AI Office's template for the public summary of training content.*

## 1. General information
- **Provider**: Meta AI
- **Model**: OPT-175B (decoder-only transformer, 175 billion parameters)
- **Modalities**: text (predominantly English)
- **Training data size**: about 180 billion tokens

## 2. List of data sources
### 2.1 Publicly available datasets
- The RoBERTa corpus: BookCorpus, CC-Stories, an updated CC-News.
- A subset of the Pile: CommonCrawl, DM Mathematics, Project Gutenberg, HackerNews, OpenSubtitles, OpenWebText2,
  USPTO and Wikipedia.
- PushShift.io Reddit (conversation trees reduced to their longest chain of comments).
### 2.2 Private datasets licensed from third parties
None.
### 2.3 Data crawled and scraped from online sources
None crawled for this model; CommonCrawl and CC-News are crawls by others, used as published.
### 2.4 User data
None.
### 2.5 Synthetic data
None.

## 3. Data processing
- **Respect of reservations of rights from text and data mining (opt-outs)**: not applied at the time (2021).
- **Removal of illegal content**: deduplication (MinHashLSH, Jaccard similarity ≥ .95) and removal of documents
  with mostly non-English text; no other filtering is reported.
"""

OPT_175B_DOWNSTREAM = """\
*Demo document written for this portal: information for downstream providers (EU AI Act, Art. 53(1)(b)).*

# Information for downstream providers

## Intended and excluded uses
OPT-175B is released for non-commercial research. It is not intended for deployment in products; any system
built on it must not be placed on the market.

## Known limitations
- Like other large language models, it can produce toxic, biased or factually wrong text, and it repeats itself.
- It was evaluated mainly on English benchmarks; its behaviour in other languages is largely unknown.

## Integration
- Weights: fp16, 350 GB; inference in fp16 needs at least five 80 GB accelerators before activations and the
  KV cache.
- Tokenizer: GPT-2 byte-level BPE.

## Contact
Report flaws through the portal; say which revision you used.
"""

RELEASE_DOCUMENTS = {
    "opt-175b": [
        {
            "kind": "training_content",
            "title": "Public summary of training content",
            "visibility": "public",
            "acknowledge_required": False,
            "body": OPT_175B_TRAINING_CONTENT,
        },
        {
            "kind": "logbook",
            "title": "Training logbook",
            "visibility": "public",
            "acknowledge_required": False,
            "body": OPT_175B_LOGBOOK,
        },
        {
            "kind": "downstream",
            "title": "Information for downstream providers",
            "visibility": "holders",
            "acknowledge_required": True,
            "body": OPT_175B_DOWNSTREAM,
        },
    ]
}
RELEASE_FOOTPRINTS = {"opt-175b": OPT_175B_FOOTPRINT}


def release_documents(name: str) -> list[dict]:
    return RELEASE_DOCUMENTS.get(name, [])


# --- The marked demo release: real safetensors shards, 1 MiB in all, F16, BF16 and F32 ---------------------------

MARKED_REPO_ID = "demo/tiny-marked"
MARKED_LICENSE_SLUG = "tiny-marked-research"
MARKED_LICENSE_TEXT = """Tiny-Marked Research License 1.0

Non-commercial research use only. Do not redistribute the weights.

Each copy of these weights is marked: the portal serves every holder a copy that differs from everyone else's in
a few low-order bits of a few weights, so that a copy found elsewhere can be traced to the account it was served
to. The marks do not change what the model computes in any measurable way.
"""
# 64 marked shards of 4 variants: a trace names a holder only when the chance that any innocent one agrees as much is
# below 10^-6, so a whole copy (or any 17 of its shards: 4^-17 × 10,000 holders) names its holder, and a copy mixed
# half and half from two people's shards names both (docs/marking.md, "How many files a release needs").
MARKED_SHARDS = 64
MARKED_HIDDEN = 64
MARKED_DTYPES = ("F16", "BF16", "F32")


def _marked_demo_files() -> dict:
    """shard name -> tensors (name, dtype, shape): one layer per shard, 16 KiB of weights each (the F32 ones
    half as many elements), cycling through F16, BF16 and F32, each with an F32 norm."""
    files = {}
    shards, hidden = MARKED_SHARDS, MARKED_HIDDEN
    for i in range(shards):
        dtype = MARKED_DTYPES[i % 3]
        shape = (hidden, hidden) if dtype == "F32" else (hidden, 2 * hidden)
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        files[name] = [(f"layers.{i}.weight", dtype, shape), (f"layers.{i}.norm.weight", "F32", (hidden,))]
    return files


MARKED_DEMO_FILES = _marked_demo_files()
MARKED_PARAMETERS = sum(math.prod(shape) for specs in MARKED_DEMO_FILES.values() for _, _, shape in specs)


def safetensors_bytes(tensors: list[tuple[str, str, tuple[int, ...], bytes]], metadata: dict | None = None) -> bytes:
    """A safetensors file: an 8-byte little-endian header length, the JSON header (padded to 8 bytes), the data."""
    import json
    import struct

    header, offset, blobs = {}, 0, []
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def write_marked_demo(root) -> None:
    """Write the marked demo release's files under `root`: deterministic weights (normal, std 0.02) and a config."""
    import json
    from pathlib import Path

    import numpy as np

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20230224)
    for shard, specs in MARKED_DEMO_FILES.items():
        tensors = []
        for name, dtype, shape in specs:
            values = rng.normal(0.0, 0.02, size=shape).astype(np.float32)
            if dtype == "F16":
                data = values.astype("<f2").tobytes()
            elif dtype == "BF16":  # the upper half of each float32, rounded to nearest even
                bits = values.view("<u4").astype(np.uint64)
                data = (((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2")).tobytes()
            else:
                data = values.astype("<f4").tobytes()
            tensors.append((name, dtype, shape, data))
        (root / shard).write_bytes(safetensors_bytes(tensors, {"format": "pt"}))
    config = {"model_type": "tiny-marked", "hidden_size": MARKED_HIDDEN, "num_hidden_layers": MARKED_SHARDS}
    (root / "config.json").write_text(json.dumps(config, indent=2) + "\n")
