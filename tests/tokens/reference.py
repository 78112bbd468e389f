"""Reference implementations the tests compare against: tiktoken's own encodings built from the
vendored files, and the OpenAI cookbook's chat and tool counting functions as published, with one
change: text is encoded with `disallowed_special=()`, so special-token strings in user text count as
the plain text the API treats them as instead of raising."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

import tiktoken
import tiktoken.load
from tiktoken.model import encoding_name_for_model
from tiktoken_ext import openai_public

DATA = Path(__file__).resolve().parents[2] / "src/tokentrail/_data/tiktoken"
CORPUS = Path(__file__).resolve().parent / "fixtures/corpus"
PUBLISHED_SHA256 = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}


def corpus() -> dict[str, str]:
    return {path.stem: path.read_text(encoding="utf-8") for path in sorted(CORPUS.glob("*.txt"))}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@functools.cache
def tiktoken_constructor_args(name: str) -> dict[str, Any]:
    """tiktoken's own constructor for `name`, reading the vendored file instead of downloading it."""

    def load_vendored(url: str, expected_hash: str | None = None) -> dict[bytes, int]:
        path = DATA / url.rsplit("/", 1)[-1]
        data = path.read_bytes()
        assert expected_hash is not None and tiktoken.load.check_hash(data, expected_hash), path
        return tiktoken.load.load_tiktoken_bpe(str(path), expected_hash=expected_hash)

    original = openai_public.load_tiktoken_bpe
    openai_public.load_tiktoken_bpe = load_vendored
    try:
        return dict(openai_public.ENCODING_CONSTRUCTORS[name]())
    finally:
        openai_public.load_tiktoken_bpe = original


@functools.cache
def reference_encoding(name: str) -> tiktoken.Encoding:
    return tiktoken.Encoding(**tiktoken_constructor_args(name))


def cookbook_encoding(model: str) -> tiktoken.Encoding:
    """What `tiktoken.encoding_for_model` picks, without letting it download."""
    return reference_encoding(encoding_name_for_model(model))


def num_tokens_from_messages(messages: list[dict[str, str]], model: str) -> int:
    """OpenAI cookbook, "How to count tokens with tiktoken", section 6 (and its gpt-3.5-turbo-0301 rule)."""
    encoding = cookbook_encoding(model)
    if model == "gpt-3.5-turbo-0301":
        tokens_per_message = 4  # every message follows <|start|>{role/name}\n{content}<|end|>\n
        tokens_per_name = -1  # if there's a name, the role is omitted
    elif model in {
        "gpt-3.5-turbo-0125",
        "gpt-4-0314",
        "gpt-4-32k-0314",
        "gpt-4-0613",
        "gpt-4-32k-0613",
        "gpt-4o-mini-2024-07-18",
        "gpt-4o-2024-08-06",
    }:
        tokens_per_message = 3
        tokens_per_name = 1
    elif "gpt-3.5-turbo" in model:
        return num_tokens_from_messages(messages, model="gpt-3.5-turbo-0125")
    elif "gpt-4o-mini" in model:
        return num_tokens_from_messages(messages, model="gpt-4o-mini-2024-07-18")
    elif "gpt-4o" in model:
        return num_tokens_from_messages(messages, model="gpt-4o-2024-08-06")
    elif "gpt-4" in model:
        return num_tokens_from_messages(messages, model="gpt-4-0613")
    else:
        raise NotImplementedError(f"num_tokens_from_messages() is not implemented for model {model}.")
    num_tokens = 0
    for message in messages:
        num_tokens += tokens_per_message
        for key, value in message.items():
            num_tokens += len(encoding.encode(value, disallowed_special=()))
            if key == "name":
                num_tokens += tokens_per_name
    num_tokens += 3  # every reply is primed with <|start|>assistant<|message|>
    return num_tokens


def num_tokens_for_tools(functions: list[dict[str, Any]], messages: list[dict[str, str]], model: str) -> int:
    """OpenAI cookbook, section 7: tool definitions on top of the messages."""
    if model in ["gpt-4o", "gpt-4o-mini"]:
        func_init, prop_init, prop_key, enum_init, enum_item, func_end = 7, 3, 3, -3, 3, 12
    elif model in ["gpt-3.5-turbo", "gpt-4"]:
        func_init, prop_init, prop_key, enum_init, enum_item, func_end = 10, 3, 3, -3, 3, 12
    else:
        raise NotImplementedError(f"num_tokens_for_tools() is not implemented for model {model}.")
    encoding = cookbook_encoding(model)
    func_token_count = 0
    if len(functions) > 0:
        for f in functions:
            func_token_count += func_init
            function = f["function"]
            f_name = function["name"]
            f_desc = function["description"]
            if f_desc.endswith("."):
                f_desc = f_desc[:-1]
            line = f_name + ":" + f_desc
            func_token_count += len(encoding.encode(line, disallowed_special=()))
            if len(function["parameters"]["properties"]) > 0:
                func_token_count += prop_init
                for key in list(function["parameters"]["properties"].keys()):
                    func_token_count += prop_key
                    p_name = key
                    p_type = function["parameters"]["properties"][key]["type"]
                    p_desc = function["parameters"]["properties"][key]["description"]
                    if "enum" in function["parameters"]["properties"][key]:
                        func_token_count += enum_init
                        for item in function["parameters"]["properties"][key]["enum"]:
                            func_token_count += enum_item
                            func_token_count += len(encoding.encode(item, disallowed_special=()))
                    if p_desc.endswith("."):
                        p_desc = p_desc[:-1]
                    line = f"{p_name}:{p_type}:{p_desc}"
                    func_token_count += len(encoding.encode(line, disallowed_special=()))
        func_token_count += func_end
    return num_tokens_from_messages(messages, model) + func_token_count
