#!/usr/bin/python3
"""The official `openai` Python client (from PyPI, in its own virtual
environment: scripts/openai_venv.sh) against the spikeserve binary on the
default model: chat, streamed chat with usage, completions, the models list
and models.retrieve, the developer role, logit_bias, errors, the same answer
as the gRPC chat, and a SIGTERM drain of HTTP streams.

  scripts/openai_venv.sh tests/python/openai_test.py \
      --server build/server/spikeserve \
      --model models/SmolLM2-135M-Instruct.Q4_1.gguf

Exit code 77 (CTest: skipped) when the model file is missing, unless CI=true.
"""
import argparse
import os
import signal
import sys
import tempfile
import unittest
import urllib.request

import grpc
import openai

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spikeserve_stubs  # noqa: E402
from server_process import ServerProcess  # noqa: E402

ARGS = None
pb = rpc = None
TOKEN = "test-token-123"
MESSAGES = [{"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": "What is the capital of France?"}]


class Server:
    """The spikeserve binary on 127.0.0.1, gRPC and HTTP on free ports."""

    def __init__(self, extra=()):
        cmd = [ARGS.server, "--model", ARGS.model, "--host", "127.0.0.1",
               "--grpc_port", "0", "--http_port", "0", "--metrics_port", "-1",
               "--threads", "2", "--served_model_name", "smollm2"] + list(extra)
        self.process = ServerProcess(
            cmd, env=dict(os.environ, SPIKESERVE_AUTH_TOKEN=TOKEN))
        self.proc, self.log = self.process.proc, self.process.log
        self.base = "http://127.0.0.1:%d" % self.process.ports["http"]
        self.client = openai.OpenAI(base_url=self.base + "/v1", api_key=TOKEN,
                                    max_retries=0, timeout=120)
        self.channel = grpc.insecure_channel(
            "127.0.0.1:%d" % self.process.ports["grpc"])
        self.stub = rpc.GenerationStub(self.channel)

    def stop(self):
        self.channel.close()
        return self.process.stop()


class OpenAiClientTest(unittest.TestCase):
    server = None

    @classmethod
    def setUpClass(cls):
        cls.server = Server()

    @classmethod
    def tearDownClass(cls):
        code = cls.server.stop()
        if code != 0:
            raise AssertionError("server exited with %d:\n%s" %
                                 (code, "".join(cls.server.log)))

    def chat(self, **kw):
        args = dict(model="smollm2", messages=MESSAGES, temperature=0,
                    max_tokens=40)
        args.update(kw)
        return self.server.client.chat.completions.create(**args)

    def test_models_list(self):
        models = self.server.client.models.list()
        self.assertEqual([m.id for m in models.data], ["smollm2"])

    def test_models_retrieve(self):
        self.assertEqual(self.server.client.models.retrieve("smollm2").id,
                         "smollm2")
        with self.assertRaises(openai.NotFoundError):
            self.server.client.models.retrieve("gpt-4o")

    def test_developer_role_is_the_system_role(self):
        developer = [dict(MESSAGES[0], role="developer")] + MESSAGES[1:]
        self.assertEqual(
            self.chat(messages=developer).choices[0].message.content,
            self.chat().choices[0].message.content)

    def test_logit_bias(self):
        # The client sends the ids as strings; +100 makes every greedy
        # token " London", which re-tokenizes to that id three times.
        ids = self.server.stub.Tokenize(
            pb.TokenizeRequest(text=" London"),
            metadata=[("authorization", "Bearer " + TOKEN)]).ids
        r = self.chat(max_tokens=3, logit_bias={str(ids[0]): 100})
        text = r.choices[0].message.content
        again = self.server.stub.Tokenize(
            pb.TokenizeRequest(text=text),
            metadata=[("authorization", "Bearer " + TOKEN)]).ids
        self.assertEqual(list(again), [ids[0]] * 3, text)
        self.assertNotIn("London", self.chat(max_tokens=3).choices[0]
                         .message.content)

    def test_chat_answers_and_streams_the_same(self):
        unary = self.chat()
        text = unary.choices[0].message.content
        self.assertIn("Paris", text)
        self.assertEqual(unary.choices[0].message.role, "assistant")
        self.assertIn(unary.choices[0].finish_reason, ("stop", "length"))
        self.assertGreater(unary.usage.prompt_tokens, 10)
        self.assertEqual(unary.usage.total_tokens,
                         unary.usage.prompt_tokens +
                         unary.usage.completion_tokens)
        chunks = list(self.chat(stream=True,
                                stream_options={"include_usage": True}))
        streamed = "".join(c.choices[0].delta.content or ""
                           for c in chunks if c.choices)
        self.assertEqual(streamed, text)
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        finishes = [c.choices[0].finish_reason for c in chunks
                    if c.choices and c.choices[0].finish_reason]
        self.assertEqual(finishes, [unary.choices[0].finish_reason])
        self.assertEqual(chunks[-1].choices, [])
        self.assertEqual(chunks[-1].usage.completion_tokens,
                         unary.usage.completion_tokens)

    def test_chat_equals_the_grpc_chat(self):
        text = self.chat().choices[0].message.content
        req = pb.GenerateRequest(
            chat=pb.ChatInput(messages=[pb.ChatMessage(**m)
                                        for m in MESSAGES]),
            sampling=pb.SamplingParams(temperature=0),
            stopping=pb.StoppingParams(max_new_tokens=40))
        r = self.server.stub.Generate(
            req, metadata=[("authorization", "Bearer " + TOKEN)])
        self.assertEqual(r.text, text)
        info = self.server.stub.GetModelInfo(
            pb.GetModelInfoRequest(),
            metadata=[("authorization", "Bearer " + TOKEN)])
        self.assertTrue(info.has_chat_template)

    def test_logprobs(self):
        r = self.chat(logprobs=True, top_logprobs=3, max_tokens=5)
        content = r.choices[0].logprobs.content
        self.assertEqual(len(content), r.usage.completion_tokens)
        for t in content:
            self.assertLessEqual(t.logprob, 0)
            self.assertEqual(len(t.top_logprobs), 3)
            # Greedy: the chosen token is the most likely one.
            self.assertAlmostEqual(t.top_logprobs[0].logprob, t.logprob,
                                   places=5)

    def test_completion_and_its_stream(self):
        c = self.server.client.completions.create(
            model="smollm2", prompt="The capital of France is",
            temperature=0, max_tokens=12)
        self.assertEqual(c.object, "text_completion")
        text = c.choices[0].text
        self.assertTrue(text)
        streamed = "".join(ch.choices[0].text for ch in
                           self.server.client.completions.create(
                               model="smollm2",
                               prompt="The capital of France is",
                               temperature=0, max_tokens=12, stream=True)
                           if ch.choices)
        self.assertEqual(streamed, text)

    def test_errors(self):
        with self.assertRaises(openai.BadRequestError) as e:
            self.chat(temperature=5)
        self.assertEqual(e.exception.status_code, 400)
        self.assertEqual(e.exception.body["param"], "temperature")
        with self.assertRaises(openai.NotFoundError):
            self.server.client.chat.completions.create(
                model="gpt-4o", messages=MESSAGES)
        bad = openai.OpenAI(base_url=self.server.base + "/v1",
                            api_key="wrong", max_retries=0)
        with self.assertRaises(openai.AuthenticationError):
            bad.models.list()
        # Still serving.
        self.assertTrue(self.chat(max_tokens=2).choices[0].message.content)

    def test_health_needs_no_token(self):
        with urllib.request.urlopen(self.server.base + "/health",
                                    timeout=10) as r:
            self.assertEqual(r.status, 200)


class DrainTest(unittest.TestCase):
    def test_sigterm_lets_http_streams_finish(self):
        # The drain waits for the stream however slow a loaded machine makes
        # it: this checks the drain, not the speed.
        server = Server(["--drain_timeout", "10m"])
        try:
            stream = server.client.chat.completions.create(
                model="smollm2", messages=MESSAGES, temperature=0,
                max_tokens=120, stream=True, extra_body={"ignore_eos": True})
            it = iter(stream)
            first = next(it)  # the stream is running
            self.assertEqual(first.choices[0].delta.role, "assistant")
            server.proc.send_signal(signal.SIGTERM)
            rest = list(it)
            finishes = [c.choices[0].finish_reason for c in rest
                        if c.choices and c.choices[0].finish_reason]
            self.assertEqual(finishes, ["length"])
            # New requests are refused while draining, or the port is closed.
            with self.assertRaises((openai.APIStatusError,
                                    openai.APIConnectionError)):
                server.client.chat.completions.create(
                    model="smollm2", messages=MESSAGES, max_tokens=2)
        finally:
            code = server.stop()
        self.assertEqual(code, 0, "".join(server.log))
        self.assertIn("draining", "".join(server.log))


def main():
    global ARGS, pb, rpc
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--model", required=True)
    ARGS, rest = p.parse_known_args()
    if not os.path.exists(ARGS.model):
        if os.environ.get("CI") == "true":
            print("model missing under CI: " + ARGS.model, file=sys.stderr)
            return 1
        print("skipped: no model at " + ARGS.model, file=sys.stderr)
        return 77
    with tempfile.TemporaryDirectory() as out:
        pb, rpc, _, _, _, _ = spikeserve_stubs.generate(out)
        result = unittest.main(argv=[sys.argv[0]] + rest, exit=False,
                               verbosity=2).result
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
