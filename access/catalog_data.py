"""The demo catalog: the OPT family, with real file names and small synthetic contents."""

from __future__ import annotations

import hashlib

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
            data = hashlib.shake_256(self.seed + block.to_bytes(8, "big")).digest(self.BLOCK)
            take = data[offset : offset + n - len(out)]
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
   anyone else. Colleagues at your institution must apply for their own access.

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
