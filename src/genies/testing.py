"""Test helpers for genies and its plug-ins: tiny random models that run anywhere in milliseconds.

``make_tiny_llama(dir)`` writes a randomly initialised LLaMA-architecture causal LM (with grouped-query
attention) and a byte-level BPE tokenizer to a local HF folder, fully offline. ``make_tiny_gemma3``
(sliding-window and full layers, scaled embeddings, ``heads x head_dim != hidden``) and
``make_tiny_neox`` (GPT-NeoX: fused QKV, partial rotary, ``dense`` output projection) do the same for
the other architectures the forward engine supports. Numbers from such models mean nothing; they
exist to test code paths (batching, padding, caching, hooks, resume) quickly.
"""

from __future__ import annotations

from pathlib import Path

_CORPUS = [
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.",
    "### Instruction:\n### Response:\n",
    "The quick brown fox jumps over the lazy dog. 0123456789",
    "What is the capital of France? Paris is the capital of France.",
    "def add(a, b):\n    return a + b\n",
    "History, mathematics, cooking, code and Spanish: hola, ¿qué tal?",
]
EOS = "<|endoftext|>"


def make_tiny_tokenizer(directory: str | Path, vocab_size: int = 384):
    """Train a small byte-level BPE tokenizer (no unknown tokens) and save it to ``directory``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, model_max_length=512)
    fast.save_pretrained(str(directory))
    return fast


def make_tiny_llama(
    directory: str | Path,
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    seed: int = 0,
) -> Path:
    """Write a tiny random LLaMA causal LM + tokenizer to ``directory`` (safetensors) and return it."""
    from transformers import LlamaConfig, LlamaForCausalLM

    directory, tok = _tiny_folder(directory)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
    )
    return _save_tiny(LlamaForCausalLM, config, directory, seed=seed)


def _tiny_folder(directory: str | Path):
    """``directory`` (created) and the tiny tokenizer saved in it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return directory, make_tiny_tokenizer(directory)


def _sharpen_head(model) -> None:
    """Larger logits than the default init, so scores differ clearly between texts."""
    model.get_output_embeddings().weight.mul_(20.0)


def _save_tiny(model_cls, config, directory: Path, *, seed: int, init=_sharpen_head) -> Path:
    """``model_cls(config)`` initialised from ``seed``, then ``init(model)`` (no grad), saved to
    ``directory`` as safetensors beside its tokenizer."""
    import torch

    torch.manual_seed(seed)
    model = model_cls(config)
    with torch.no_grad():
        init(model)
    model.save_pretrained(str(directory), safe_serialization=True)
    return directory


def _normal_init(model) -> None:
    """Gemma's init leaves norms at zero gain; random weights everywhere make texts differ."""
    for p in model.parameters():
        p.normal_(0.0, 0.2)


def make_tiny_gemma3(directory: str | Path, *, sliding_window: int = 8, seed: int = 0) -> Path:
    """A tiny random Gemma-3 text model: two sliding-window layers (window ``sliding_window``) and a
    full-attention one, 4 query / 2 KV heads of 16 dims on a 32-wide residual stream."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    directory, tok = _tiny_folder(directory)
    config = Gemma3TextConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        query_pre_attn_scalar=16,
        sliding_window=sliding_window,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.eos_token_id,
    )
    return _save_tiny(Gemma3ForCausalLM, config, directory, seed=seed, init=_normal_init)


def make_tiny_neox(directory: str | Path, *, seed: int = 0) -> Path:
    """A tiny random GPT-NeoX: 2 layers, 4 heads of 8 dims, rotary on a quarter of each head."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    directory, tok = _tiny_folder(directory)
    config = GPTNeoXConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        rotary_pct=0.25,
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return _save_tiny(GPTNeoXForCausalLM, config, directory, seed=seed)
