#!/usr/bin/env python3
"""Drives a Tollgate edge with the official `openai` Python SDK: chat, streaming chat with
usage, tool calls (whole and streamed, parsed by the SDK), embeddings through the SDK's
default base64 path, and an error. Exits non-zero with a clear message on the first mismatch.

Configuration (environment variables, or the matching --flags):
  TOLLGATE_BASE_URL      the edge's OpenAI base URL, e.g. http://127.0.0.1:8080/v1
  TOLLGATE_API_KEY       a virtual key
  TOLLGATE_CHAT_MODEL    a chat model (e.g. mock-small)
  TOLLGATE_TOOL_MODEL    a model whose upstream answers tool requests with a call
  TOLLGATE_EMBED_MODEL   an embeddings model (e.g. mock-embed)
  TOLLGATE_TOOL_ARGUMENTS  the JSON arguments the tool call must carry (optional)
"""

import argparse
import json
import os
import sys

try:
    import openai
except ImportError:
    sys.exit(
        "sdk_check: the openai package is missing; "
        "run: python3 -m pip install -r tests/python/requirements.txt"
    )

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}


class Mismatch(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise Mismatch(message)


def check_chat(client, model):
    completion = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hello"}]
    )
    expect(completion.id, "chat: empty id")
    expect(len(completion.choices) == 1, f"chat: {len(completion.choices)} choices")
    choice = completion.choices[0]
    expect(choice.message.role == "assistant", f"chat: role {choice.message.role!r}")
    expect(choice.message.content, "chat: empty content")
    expect(choice.finish_reason in ("stop", "length"), f"chat: finish_reason {choice.finish_reason!r}")
    usage = completion.usage
    expect(usage is not None, "chat: no usage")
    expect(
        usage.total_tokens == usage.prompt_tokens + usage.completion_tokens,
        f"chat: usage does not add up: {usage}",
    )
    return choice.message.content


def check_stream(client, model, expected_content):
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Say hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    content, finish_reasons, usage_chunks, ids, chunks = [], [], [], set(), 0
    for chunk in stream:
        chunks += 1
        ids.add(chunk.id)
        if chunk.usage is not None:
            expect(chunk.choices == [], f"stream: usage chunk with choices: {chunk}")
            usage_chunks.append(chunk.usage)
            continue
        for choice in chunk.choices:
            if choice.delta.content:
                content.append(choice.delta.content)
            if choice.finish_reason:
                finish_reasons.append(choice.finish_reason)
    text = "".join(content)
    expect(chunks > 2, f"stream: only {chunks} chunks")
    expect(len(ids) == 1, f"stream: chunk ids differ: {ids}")
    expect(text == expected_content, f"stream: content {text!r} != {expected_content!r}")
    expect(len(finish_reasons) == 1, f"stream: finish reasons {finish_reasons}")
    expect(len(usage_chunks) == 1, f"stream: {len(usage_chunks)} usage chunks, want 1")
    expect(usage_chunks[0].completion_tokens > 0, f"stream: usage {usage_chunks[0]}")


def check_tools(client, model, expected_arguments):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    completion = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL])
    choice = completion.choices[0]
    expect(choice.finish_reason == "tool_calls", f"tools: finish_reason {choice.finish_reason!r}")
    calls = choice.message.tool_calls or []
    expect(len(calls) == 1, f"tools: {len(calls)} tool calls")
    call = calls[0]
    expect(call.id, "tools: tool call without id")
    expect(call.function.name == "get_weather", f"tools: called {call.function.name!r}")
    arguments = json.loads(call.function.arguments)
    if expected_arguments is not None:
        expect(arguments == expected_arguments, f"tools: arguments {arguments} != {expected_arguments}")

    # Streamed: the SDK's stream helper reassembles the tool-call deltas itself.
    with client.chat.completions.stream(model=model, messages=messages, tools=[WEATHER_TOOL]) as stream:
        argument_events = 0
        for event in stream:
            if event.type == "tool_calls.function.arguments.delta":
                argument_events += 1
        final = stream.get_final_completion()
    streamed = final.choices[0].message.tool_calls or []
    expect(len(streamed) == 1, f"tools stream: {len(streamed)} tool calls")
    expect(streamed[0].function.name == "get_weather", f"tools stream: called {streamed[0].function.name!r}")
    streamed_arguments = json.loads(streamed[0].function.arguments)
    expect(
        streamed_arguments == arguments,
        f"tools stream: arguments {streamed_arguments} != {arguments}",
    )
    expect(argument_events >= 1, "tools stream: no argument deltas")
    expect(final.choices[0].finish_reason == "tool_calls", f"tools stream: finish_reason {final.choices[0].finish_reason!r}")

    # The tool result goes back and the model answers in text.
    follow_up = messages + [
        {"role": "assistant", "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "18 C and sunny"},
    ]
    answer = client.chat.completions.create(model=model, messages=follow_up, tools=[WEATHER_TOOL])
    expect(answer.choices[0].message.content, "tools: no text after the tool result")


def check_embeddings(client, model):
    texts = ["the quick brown fox", "jumps over", "the quick brown fox"]
    # No encoding_format: the SDK asks for base64 and decodes it.
    default = client.embeddings.create(model=model, input=texts)
    vectors = [item.embedding for item in sorted(default.data, key=lambda item: item.index)]
    expect(len(vectors) == 3, f"embeddings: {len(vectors)} vectors")
    expect(all(isinstance(value, float) for value in vectors[0]), "embeddings: not floats")
    expect(len(vectors[0]) > 0, "embeddings: empty vector")
    expect(vectors[0] == vectors[2], "embeddings: same text, different vectors")
    expect(vectors[0] != vectors[1], "embeddings: different texts, same vector")
    expect(default.usage.prompt_tokens > 0, f"embeddings: usage {default.usage}")
    floats = client.embeddings.create(model=model, input=texts, encoding_format="float")
    float_vectors = [item.embedding for item in sorted(floats.data, key=lambda item: item.index)]
    for got, want in zip(vectors, float_vectors):
        expect(
            len(got) == len(want) and all(abs(a - b) < 1e-6 for a, b in zip(got, want)),
            "embeddings: base64 and float answers differ",
        )


def check_error(client):
    try:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    except openai.NotFoundError as error:
        expect(error.status_code == 404, f"error: status {error.status_code}")
        expect(error.code == "model_not_found", f"error: code {error.code!r}")
        return
    raise Mismatch("error: an unknown model did not raise NotFoundError")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    env = os.environ.get
    parser.add_argument("--base-url", default=env("TOLLGATE_BASE_URL"))
    parser.add_argument("--api-key", default=env("TOLLGATE_API_KEY"))
    parser.add_argument("--chat-model", default=env("TOLLGATE_CHAT_MODEL", "mock-small"))
    parser.add_argument("--tool-model", default=env("TOLLGATE_TOOL_MODEL"))
    parser.add_argument("--embed-model", default=env("TOLLGATE_EMBED_MODEL", "mock-embed"))
    parser.add_argument("--tool-arguments", default=env("TOLLGATE_TOOL_ARGUMENTS"))
    args = parser.parse_args()
    missing = [name for name in ("base_url", "api_key", "tool_model") if not getattr(args, name)]
    if missing:
        parser.error("missing: " + ", ".join(missing))
    expected_arguments = json.loads(args.tool_arguments) if args.tool_arguments else None

    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0, timeout=60)
    checks = [
        ("chat", lambda: check_stream(client, args.chat_model, check_chat(client, args.chat_model))),
        ("tools", lambda: check_tools(client, args.tool_model, expected_arguments)),
        ("embeddings", lambda: check_embeddings(client, args.embed_model)),
        ("error", lambda: check_error(client)),
    ]
    for name, check in checks:
        try:
            check()
        except Mismatch as mismatch:
            sys.exit(f"sdk_check: FAILED {mismatch}")
        except openai.OpenAIError as error:
            sys.exit(f"sdk_check: FAILED {name}: the SDK raised {type(error).__name__}: {error}")
        print(f"sdk_check: {name} ok")
    print(f"sdk_check: all checks passed with openai {openai.__version__}")


if __name__ == "__main__":
    main()
