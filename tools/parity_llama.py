"""Parity of findvl's LLaMA text path with the official FIND ``llamaencoder.py``.

A tiny random LLaMA (14 layers, so ``hidden_states[-12]`` is the output of layer 3 and not the
last one) is written as a Hugging Face directory with a word-level fast tokenizer. The official
``LanguageEncoder`` of ``modeling/language/llamaencoder.py`` (with its vendored LLaMA, which
needs ``transformers`` 4.34) runs unmodified in a second interpreter; only unrelated imports are
stubbed (``official_stubs``) and ``Tensor.cuda`` is the identity so its ``.cuda()`` call works on
CPU. findvl's ``load_language_encoder`` runs here on the same directory, texts and ``lang_proj``.

Precisions: ``fp16`` is the official inference path (``from_config`` loads the LLM in fp16 and
``get_text_token_embeddings`` casts the embeddings to fp16 in eval mode). The official code has
no fp32 switch; ``fp32`` passes it an fp32 LLM and runs its training-mode branch (which only
skips that cast; the vendored LLaMA has no dropout), under ``no_grad``.

Outputs compared (official tokenisation pads to ``CONTEXT_LENGTH``, findvl to the longest text:
the masks must be equal once padded alike, and token outputs are compared at each side's valid
tokens, ``[B,L,C] -> [N,C]``): ``input_ids``, ``mask``,
``features`` (``hidden_states[FEATURE_LAYER]``), ``sentence`` (mean over the mask), and after
``lang_proj``: ``token_emb`` and ``class_emb``. One JSON line per output and precision, with
``max_abs`` and ``max_rel = max|a-b| / max|official|``.

Usage::

    .venv/bin/python tools/parity_llama.py --official /tmp/find_official \
        --official-python /tmp/llama-venv/bin/python [--golden FILE]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

TOOLS = Path(__file__).resolve().parent
CONFIG_NAME = "focalt_llama_lang"  # the official LLaMA config whose TEXT settings are used
CLASS_NAMES = ["dog", "traffic light", "potted plant", "person", "teddy bear"]
PROMPT = "Describe the concept of {name}."  # the official class prompt (prompt_engineering.py)
PHRASES = ["a red car", "the man on the left holding an umbrella", "sky"]
CAPTION = (  # longer than 77 tokens: truncation keeps BOS and the first 76 words
    "A busy street at dusk where a man in a grey coat holds an umbrella over a small child "
    "while two dogs wait next to a red car parked by the curb , a cyclist passes a bus stop "
    "with people reading , shop windows glow with yellow light , a woman carries bags of fruit "
    "and a tall tree leans over the road as the traffic light turns green and a delivery van "
    "stops near a fire hydrant beside the old bakery on the corner of the square ."
)
TEXTS = [PROMPT.format(name=n) for n in CLASS_NAMES] + PHRASES + [CAPTION]
# "mixed" reaches 77 tokens (the caption is truncated); "short" pads to fewer than 77 in findvl
BATCHES = {"mixed": TEXTS, "short": TEXTS[:-1]}
SIZE = {"layers": 14, "hidden": 32, "heads": 4, "ffn": 64, "proj": 16}  # < 1 MB of weights
OUTPUTS = ("input_ids", "mask", "features", "sentence", "token_emb", "class_emb")


# ---- the tiny checkpoint (findvl's transformers) ------------------------------------------
def write_tokenizer(directory: Path) -> None:
    """A case-sensitive word-level fast tokenizer: ``<unk>=0, <s>=1, </s>=2``, BOS prepended,
    no EOS appended (as LLaMA's), saved so that both ``tokenizers`` 0.14 and today's read it."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for t in TEXTS for w in re.findall(r"\w+|[^\w\s]", t)})
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(directory)
    settings = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>",
                "eos_token": "</s>", "unk_token": "<unk>", "model_max_length": 2048}  # fmt: skip
    (directory / "tokenizer_config.json").write_text(json.dumps(settings, indent=2))


def write_checkpoint(directory: Path, seed: int = 0) -> Path:
    """A random ``LlamaForCausalLM`` of :data:`SIZE` (full multi-head attention: the vendored
    LLaMA has no grouped-query attention), weights drawn with std 0.2 so that attention and
    rotary positions visibly shape the features."""
    from transformers import LlamaConfig, LlamaForCausalLM

    directory.mkdir(parents=True, exist_ok=True)
    write_tokenizer(directory)
    vocab = len(json.loads((directory / "tokenizer.json").read_text())["model"]["vocab"])
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=SIZE["hidden"], intermediate_size=SIZE["ffn"],
        num_hidden_layers=SIZE["layers"], num_attention_heads=SIZE["heads"],
        num_key_value_heads=SIZE["heads"], max_position_embeddings=128, rms_norm_eps=1e-6,
        initializer_range=0.2, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # random RMSNorm gains, so a dropped or extra norm is visible
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.3 * torch.randn_like(p))
    model.save_pretrained(directory, safe_serialization=True)
    check_checkpoint(directory)
    return directory


def check_checkpoint(directory: Path) -> None:
    """Fail unless ``config.json`` has the keys the vendored LLaMA reads and the weights are
    named as it expects (``model.layers.N...``, ``lm_head.weight``)."""
    from safetensors import safe_open

    config = json.loads((directory / "config.json").read_text())
    needed = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
              "num_attention_heads", "max_position_embeddings", "rms_norm_eps",
              "hidden_act")  # fmt: skip
    missing = [k for k in needed if k not in config]
    if missing:
        raise RuntimeError(f"{directory}/config.json lacks {missing}")
    with safe_open(str(directory / "model.safetensors"), "pt") as f:
        names = set(f.keys())
    expected = {"lm_head.weight", "model.embed_tokens.weight", "model.norm.weight"}
    for i in range(config["num_hidden_layers"]):
        for part in ("q_proj", "k_proj", "v_proj", "o_proj"):
            expected.add(f"model.layers.{i}.self_attn.{part}.weight")
        for part in ("gate_proj", "up_proj", "down_proj"):
            expected.add(f"model.layers.{i}.mlp.{part}.weight")
        for part in ("input_layernorm", "post_attention_layernorm"):
            expected.add(f"model.layers.{i}.{part}.weight")
    if names != expected:
        raise RuntimeError(
            f"{directory}: unexpected weight names: missing {sorted(expected - names)[:4]}, "
            f"extra {sorted(names - expected)[:4]}"
        )


# ---- the official encoder (run in the transformers-4.34 interpreter) ----------------------
def official_worker(checkout: Path, model_dir: Path, inputs: Path, out: Path) -> None:
    """Run the official ``LanguageEncoder`` on the texts and ``lang_proj`` of ``inputs``."""
    import yaml
    from safetensors.torch import load_file, save_file

    sys.path.insert(0, str(TOOLS))
    import official_stubs

    official_stubs.install(checkout)
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # its token path calls .cuda()
    from modeling.language.LangEncoder import modeling_llama

    package = sys.modules["modeling.language.LangEncoder"]
    package.LlamaForCausalLM = modeling_llama.LlamaForCausalLM
    package.build_tokenizer = package.build_lang_encoder = None  # imported, unused here
    from modeling.language import llamaencoder

    data = load_file(str(inputs))
    batches = json.loads(inputs.with_suffix(".json").read_text())
    cfg = yaml.safe_load((checkout / "configs" / "find" / f"{CONFIG_NAME}.yaml").read_text())
    cfg["MODEL"]["TEXT"]["NAME"] = str(model_dir)
    cfg["MODEL"]["TEXT"]["WIDTH"], cfg["MODEL"]["DIM_PROJ"] = data["lang_proj"].shape
    results = {}
    for dtype in ("fp16", "fp32"):
        if dtype == "fp16":  # the official construction: from_config loads the LLM in fp16
            lang = llamaencoder.LanguageEncoder(cfg).eval()
        else:
            model = modeling_llama.LlamaForCausalLM.from_pretrained(
                str(model_dir), torch_dtype=torch.float32, use_cache=True,
                output_hidden_states=True, return_dict_in_generate=True,
            )  # fmt: skip
            lang = llamaencoder.LanguageEncoder(cfg, model=model).train()
        lang.lang_proj.data.copy_(data["lang_proj"])
        for batch, texts in batches.items():
            with torch.no_grad():
                raw = lang.get_text_token_embeddings(texts, projection=False)
                projected = lang.get_text_token_embeddings(texts, projection=True)
            full = {
                "input_ids": raw["tokens"]["input_ids"], "mask": raw["tokens"]["attention_mask"],
                "features": raw["token_emb"], "sentence": raw["class_emb"],
                "token_emb": projected["token_emb"], "class_emb": projected["class_emb"],
            }  # fmt: skip
            results.update({f"{batch}.{dtype}.{k}": v for k, v in valid_outputs(full).items()})
    meta = {"context_length": lang.context_length, "feature_layer": lang.feature_layer}
    save_file({k: v.contiguous() for k, v in results.items()}, str(out), {"meta": json.dumps(meta)})


def valid_outputs(full: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Token outputs at the positions of ``mask`` (``[B,L,C] -> [N,C]``), float32."""
    mask = full["mask"].bool()
    out = {"mask": mask, "input_ids": full["input_ids"][mask]}
    for name in ("features", "token_emb"):
        out[name] = full[name][mask].float()
    for name in ("sentence", "class_emb"):
        out[name] = full[name].float()
    return out


def run_official(python: str, checkout: Path, model_dir: Path, lang_proj: torch.Tensor, work: Path):
    """The official outputs ``{"<batch>.<dtype>.<output>": ...}`` and its settings."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    inputs, out = work / "inputs.safetensors", work / "official.safetensors"
    save_file({"lang_proj": lang_proj.contiguous()}, str(inputs))
    inputs.with_suffix(".json").write_text(json.dumps(BATCHES))
    command = [python, __file__, "--worker", "--official", str(checkout), "--model", str(model_dir),
               "--inputs", str(inputs), "--out", str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the official encoder failed:\n{done.stderr[-4000:]}")
    with safe_open(str(out), "pt") as f:
        meta = json.loads(f.metadata()["meta"])
    return load_file(str(out)), meta


# ---- findvl --------------------------------------------------------------------------------
def run_findvl(
    model_dir: Path, lang_proj: torch.Tensor, dtype: str, texts: list[str], layer: int | None = None
) -> dict[str, torch.Tensor]:
    """findvl's outputs (:func:`valid_outputs` form) as the released LLaMA preset reads texts
    (its ``layer`` unless given, its ``max_length``)."""
    from findvl.encoders.hf_language import tokenize
    from findvl.encoders.loading import load_language_encoder
    from findvl.released import released_config

    settings = released_config("focalt", "llama").language
    encoder = load_language_encoder(
        model_dir, layer=settings.layer if layer is None else layer, dtype=dtype,
        max_length=settings.max_length,
    )  # fmt: skip
    tokens = encoder.encode(texts)
    ids, _, _ = tokenize(encoder.tokenizer, texts, max_length=encoder.max_length)
    full = {
        "input_ids": ids, "mask": tokens.mask, "features": tokens.features,
        "sentence": tokens.sentence,
        "token_emb": tokens.features @ lang_proj,  # FindModel.encode_text, identity calibration
        "class_emb": tokens.sentence @ lang_proj,
    }  # fmt: skip
    return valid_outputs(full)


def compare(ours: dict[str, torch.Tensor], official: dict[str, torch.Tensor], **label) -> list:
    """One row per output with ``max_abs`` and ``max_rel``, labelled with ``label``."""
    rows = []
    for name in OUTPUTS:
        a, b = ours[name], official[name]
        if name == "mask":  # findvl pads to the longest text, the official code to 77
            width = max(a.shape[1], b.shape[1])
            a, b = (torch.nn.functional.pad(m.long(), (0, width - m.shape[1])) for m in (a, b))
        rows.append({**label, **_row(name, a, b)})
    return rows


def _row(name: str, a: torch.Tensor, b: torch.Tensor) -> dict:
    if a.shape != b.shape:
        return {"output": name, "error": f"shape {list(a.shape)} vs official {list(b.shape)}"}
    diff = (a.double() - b.double()).abs().max().item()
    scale = b.double().abs().max().item()
    return {"output": name, "shape": list(b.shape), "max_abs": diff,
            "max_rel": diff / scale if scale else diff}  # fmt: skip


def part(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``tensors`` under ``prefix.``, with the prefix removed."""
    return {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


# ---- golden fixture ------------------------------------------------------------------------
GOLDEN_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json")


def write_golden(path: Path, model_dir: Path, lang_proj: torch.Tensor, official: dict) -> None:
    """One safetensors file: the checkpoint (``weights.*`` + its text files in the metadata),
    ``lang_proj``, the texts and the official outputs (``official.<batch>.<dtype>.*``)."""
    from safetensors.torch import load_file, save_file

    tensors = {
        f"weights.{k}": v for k, v in load_file(str(model_dir / "model.safetensors")).items()
    }
    tensors["lang_proj"] = lang_proj
    tensors.update({f"official.{k}": v for k, v in official.items()})
    files = {name: (model_dir / name).read_text() for name in GOLDEN_FILES}
    meta = {"batches": BATCHES, "files": files, "config": CONFIG_NAME, "commit": "521c934"}
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, str(path), {"meta": json.dumps(meta)})


def read_golden(path: Path, model_dir: Path) -> tuple[dict, torch.Tensor, dict]:
    """Write the fixture's checkpoint into ``model_dir``; return ``(meta, lang_proj, official)``."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["meta"])
    tensors = load_file(str(path))
    model_dir.mkdir(parents=True, exist_ok=True)
    save_file(part(tensors, "weights"), str(model_dir / "model.safetensors"), {"format": "pt"})
    for name, text in meta["files"].items():
        (model_dir / name).write_text(text)
    return meta, tensors["lang_proj"], part(tensors, "official")


def report(official: dict, model_dir: Path, lang_proj: torch.Tensor) -> list[dict]:
    """Every comparison row: findvl vs official per batch and precision, and the fp16 floors."""
    rows = []
    for batch, texts in BATCHES.items():
        ref = {d: part(official, f"{batch}.{d}") for d in ("fp32", "fp16")}
        for dtype in ("fp32", "fp16"):
            ours = run_findvl(model_dir, lang_proj, dtype, texts)
            rows += compare(ours, ref[dtype], batch=batch, dtype=dtype)
            if dtype == "fp16":
                rows += compare(
                    ours, ref["fp32"], batch=batch, dtype="findvl fp16 vs official fp32"
                )
        rows += compare(ref["fp16"], ref["fp32"], batch=batch, dtype="official fp16 vs fp32")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, required=True, help="FIND checkout (521c934)")
    parser.add_argument("--official-python", help="python with transformers 4.34 and torch")
    parser.add_argument("--golden", type=Path, help="also write a golden fixture to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--inputs", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        official_worker(args.official.resolve(), args.model, args.inputs, args.out)
        return 0
    if not (args.official / "modeling" / "language" / "llamaencoder.py").is_file():
        print(
            f"--official: {args.official} has no modeling/language/llamaencoder.py", file=sys.stderr
        )
        return 2
    if not args.official_python or not Path(args.official_python).is_file():
        print(f"--official-python: not a file: {args.official_python}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = write_checkpoint(work / "tiny-llama")
        torch.manual_seed(1)
        lang_proj = torch.randn(SIZE["hidden"], SIZE["proj"]) * SIZE["hidden"] ** -0.5
        official, meta = run_official(
            args.official_python, args.official, model_dir, lang_proj, work
        )
        print(json.dumps({"output": "settings", "official": meta, "batches": list(BATCHES)}))
        for row in report(official, model_dir, lang_proj):
            print(json.dumps(row))
        if args.golden:
            write_golden(args.golden, model_dir, lang_proj, official)
            print(json.dumps({"golden": str(args.golden), "bytes": args.golden.stat().st_size}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
