"""Drives a node's OpenAI-compatible gateway with the official OpenAI Python SDK.

Usage: python3 check.py BASE_URL API_KEY
Prints one JSON line with what it saw; exits non-zero (with a message) when a check fails.
"""

import json
import math
import sys
import time

import openai
from openai import OpenAI

EMBED = "all-minilm-l6-v2"
CHAT = "smollm2-135m-instruct"
# Asks for a verified job even where the gateway serves from warm sessions.
JOB = {"agora": {"mode": "job"}}


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def expect_error(kind, status, fragment, call):
    try:
        call()
    except kind as e:
        assert e.status_code == status, f"expected {status}, got {e.status_code}: {e}"
        message = e.body.get("message", "") if isinstance(e.body, dict) else str(e.body)
        assert fragment in message, f"error message {message!r} lacks {fragment!r}"
        return message
    raise AssertionError(f"expected {kind.__name__} ({status})")


def main():
    base, key = sys.argv[1], sys.argv[2]
    client = OpenAI(base_url=base, api_key=key, timeout=900, max_retries=0)
    seen = {}

    models = sorted(m.id for m in client.models.list())
    assert EMBED in models and CHAT in models, models
    seen["models"] = models

    # Errors come back in OpenAI's shape, mapped by the SDK to its exception types.
    bad = OpenAI(base_url=base, api_key="sk-agora-not-a-key", max_retries=0)
    seen["bad_key"] = expect_error(openai.AuthenticationError, 401, "API key", lambda: bad.models.list())
    seen["empty_input"] = expect_error(
        openai.BadRequestError, 400, "input", lambda: client.embeddings.create(model=EMBED, input=[])
    )
    seen["no_messages"] = expect_error(
        openai.BadRequestError, 400, "messages", lambda: client.chat.completions.create(model=CHAT, messages=[])
    )
    seen["unknown_model"] = expect_error(
        openai.NotFoundError, 404, "gpt-4o", lambda: client.embeddings.create(model="gpt-4o", input="x")
    )

    # Embeddings: the model's dimension, unit length, and sensible similarities.
    texts = [
        "A cat is sleeping on the sofa.",
        "A kitten naps on the couch.",
        "Quarterly corporate tax filings are due in April.",
    ]
    r = client.embeddings.create(model=EMBED, input=texts, extra_body=JOB)
    vecs = [d.embedding for d in sorted(r.data, key=lambda d: d.index)]
    assert len(vecs) == 3 and all(len(v) == 384 for v in vecs), [len(v) for v in vecs]
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-3 for v in vecs), "not L2-normalised"
    near, far = cosine(vecs[0], vecs[1]), cosine(vecs[0], vecs[2])
    assert near > far + 0.2, (near, far)
    seen["similarity"] = {"cat~kitten": round(near, 3), "cat~tax": round(far, 3)}
    seen["embed_job"] = (r.model_extra or {}).get("agora")

    # Chat, streamed: tokens arrive as several chunks and end with a finish reason.
    messages = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
    stream = client.chat.completions.create(
        model=CHAT, messages=messages, max_tokens=24, stream=True, extra_body=JOB
    )
    pieces, finish = [], None
    for chunk in stream:
        choice = chunk.choices[0]
        if choice.delta.content:
            pieces.append(choice.delta.content)
        finish = choice.finish_reason or finish
    text = "".join(pieces)
    assert len(pieces) >= 2 and text.strip(), pieces
    assert finish in ("stop", "length"), finish
    seen["stream"] = {"chunks": len(pieces), "text": text, "finish_reason": finish}

    # The same request unstreamed: greedy decoding is deterministic, so the text is the same.
    c = client.chat.completions.create(model=CHAT, messages=messages, max_tokens=24, extra_body=JOB)
    assert c.choices[0].message.content == text, (c.choices[0].message.content, text)
    assert c.usage.completion_tokens > 0
    seen["chat_job"] = (c.model_extra or {}).get("agora")

    # Sessions (the gateway's default here): the same answers from a warm model, at once.
    c = client.chat.completions.create(model=CHAT, messages=messages, max_tokens=24)
    agora = (c.model_extra or {}).get("agora") or {}
    assert agora.get("mode") == "session", agora
    assert c.choices[0].message.content == text, "a session's greedy answer is the job's"
    assert c.usage.prompt_tokens > 0 and c.usage.completion_tokens > 0, c.usage

    # Streamed from a session: pieces arrive spread over the generation, not in one burst.
    story = [{"role": "user", "content": "Tell me a short story about a lighthouse keeper."}]
    start = time.monotonic()
    arrivals, pieces, last = [], [], None
    for chunk in client.chat.completions.create(model=CHAT, messages=story, max_tokens=64, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - start)
            pieces.append(chunk.choices[0].delta.content)
        last = chunk
    total = time.monotonic() - start
    first, final = arrivals[0], arrivals[-1]
    assert len(pieces) >= 8, pieces
    assert first < 0.5 * total and final - first > 0.5 * total, (first, final, total)
    extra = last.model_extra or {}
    assert extra["agora"]["mode"] == "session" and extra["agora"]["receipt"], extra
    usage = last.usage
    assert usage.completion_tokens >= len(pieces) and usage.prompt_tokens > 0, usage
    seen["session_stream"] = {
        "first_s": round(first, 3), "last_s": round(final, 3), "total_s": round(total, 3), "chunks": len(pieces),
        "prompt": story[0]["content"], "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens, "agora": extra["agora"],
    }

    # Embeddings from a session: the job's vectors, and the tokens read.
    r2 = client.embeddings.create(model=EMBED, input=texts)
    assert (r2.model_extra or {})["agora"]["mode"] == "session", r2.model_extra
    vecs2 = [d.embedding for d in sorted(r2.data, key=lambda d: d.index)]
    assert all(cosine(a, b) > 0.999 for a, b in zip(vecs, vecs2)), "a session embeds as the job did"
    assert r2.usage.prompt_tokens > 3 * len(texts), r2.usage
    seen["session_embed"] = {"prompt_tokens": r2.usage.prompt_tokens}
    print(json.dumps(seen))


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"check failed: {e}", file=sys.stderr)
        raise
