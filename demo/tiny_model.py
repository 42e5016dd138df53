"""Build a tiny random-weight Llama with its own BPE tokenizer, offline (run with the vLLM venv's Python).

Usage: ``python tiny_model.py OUT_DIR``. It needs ``torch``, ``transformers`` and ``tokenizers`` (the vLLM venv has
them) and nothing from the network: the tokenizer is trained on a few KB of text generated here, the weights are
random with a fixed seed. The model (hidden 256, 4 layers, 4 heads / 2 KV heads) is only useful to make vLLM
serve real requests through its real scheduler and KV cache; what it generates is noise.

This file is deliberately standalone (no optiinfra imports): it runs in another interpreter.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

HIDDEN = 256
LAYERS = 4
HEADS = 4
KV_HEADS = 2
VOCAB = 1024
MAX_POSITIONS = 4096

_TEXT = (
    "the engine serves requests from a queue while the scheduler admits them when the key value cache has "
    "free blocks a request that does not fit waits and a running request that loses its blocks is "
    "preempted and recomputed later prefill reads the prompt decode writes one token per step the batch "
    "grows until memory or the token budget runs out latency rises when the queue grows throughput falls "
    "when blocks are scarce operators raise the cache memory or lower the number of sequences to relieve "
    "pressure metrics tell them which lever to pull alerts fire when a condition holds long enough and "
    "resolve when it clears"
)
_WORDS = _TEXT.split(" ")


def corpus(size: int = 6000, seed: int = 14) -> list[str]:
    """A few KB of deterministic text (sentences drawn from a small domain vocabulary, digits, punctuation)."""
    rng = random.Random(seed)
    lines: list[str] = []
    total = 0
    while total < size:
        words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 16))]
        line = " ".join(words).capitalize() + rng.choice((".", ",", "?", "!", ":")) + f" {rng.randint(0, 9999)}"
        lines.append(line)
        total += len(line) + 1
    return lines


def build(out: Path) -> None:
    import torch  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415 -- only in the vLLM venv
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415

    specials = ["<unk>", "<s>", "</s>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   model_max_length=MAX_POSITIONS)
    tmp = out.with_name(out.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(tmp)

    torch.manual_seed(14)
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=MAX_POSITIONS,
        bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, pad_token_id=None, tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config).to(torch.float32)
    model.save_pretrained(tmp, safe_serialization=True)
    (tmp / "optiinfra-tiny-model.json").write_text(json.dumps({
        "hidden": HIDDEN, "layers": LAYERS, "heads": HEADS, "kv_heads": KV_HEADS, "vocab": len(fast),
    }) + "\n", encoding="utf-8")
    tmp.rename(out)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: tiny_model.py OUT_DIR\n")
        return 2
    out = Path(argv[0])
    if (out / "optiinfra-tiny-model.json").exists():
        return 0
    build(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
