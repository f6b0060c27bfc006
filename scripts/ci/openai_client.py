"""The official `openai` Python client against a running `muse serve`: completions, chat
streaming, embeddings and image generation, each checked for the shape a client relies on.

    python openai_client.py http://127.0.0.1:PORT/v1 TEXT_MODEL EMBED_MODEL IMAGE_MODEL
"""
import base64
import sys

from openai import OpenAI

base, text_model, embed_model, image_model = sys.argv[1:5]
client = OpenAI(base_url=base, api_key="not-needed")

models = {m.id for m in client.models.list().data}
assert {text_model, embed_model, image_model} <= models, models

done = client.completions.create(model=text_model, prompt="The capital of France is",
                                 max_tokens=8, temperature=0, logprobs=3)
choice = done.choices[0]
assert choice.text and choice.finish_reason in ("stop", "length"), done
assert len(choice.logprobs.tokens) == done.usage.completion_tokens, done
print("completion:", repr(choice.text), done.usage)

pieces = []
stream = client.chat.completions.create(
    model=text_model, messages=[{"role": "user", "content": "Say hello in French."}],
    max_tokens=16, temperature=0, stream=True)
finish = None
for chunk in stream:
    if chunk.choices:
        pieces.append(chunk.choices[0].delta.content or "")
        finish = chunk.choices[0].finish_reason or finish
reply = "".join(pieces)
assert reply.strip() and finish in ("stop", "length"), (reply, finish)
print("chat stream:", repr(reply), "chunks:", len(pieces))

emb = client.embeddings.create(model=embed_model, input=["a cat", "a dog", "a bond yield"])
vectors = [d.embedding for d in emb.data]
assert len(vectors) == 3 and len(vectors[0]) == 384, [len(v) for v in vectors]
dot = lambda a, b: sum(x * y for x, y in zip(a, b))
assert dot(vectors[0], vectors[1]) > dot(vectors[0], vectors[2]), "cat should be nearer dog"
print("embeddings: 3 x", len(vectors[0]))

images = client.images.generate(model=image_model, prompt="a digit", n=2,
                                response_format="b64_json")
for d in images.data:
    png = base64.b64decode(d.b64_json)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and b"AI-generated" in png, png[:64]
print("images:", len(images.data), "PNGs labelled AI-generated")
