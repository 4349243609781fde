"""Python stubs for spikeserve.v1, grpc.health.v1 and reflection v1alpha,
generated at run time from proto/ and Debian's grpc-proto (python3-grpc-tools)."""
import os
import sys

from grpc_tools import protoc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def generate(out):
    """Compiles the protos into `out`, puts it on sys.path and returns the
    modules (generation_pb2, generation_pb2_grpc, health_pb2,
    health_pb2_grpc, reflection_pb2, reflection_pb2_grpc)."""
    # grpc.health and grpc.reflection would clash with the grpc package's
    # own modules: compile copies under another directory (the proto
    # package, hence the wire names, stay the same).
    ext = os.path.join(out, "protos", "spikeserve_ext")
    os.makedirs(ext, exist_ok=True)
    for src in ["grpc/health/v1/health.proto",
                "grpc/reflection/v1alpha/reflection.proto"]:
        with open(os.path.join("/usr/share/grpc-proto", src)) as f:
            body = f.read()
        with open(os.path.join(ext, os.path.basename(src)), "w") as f:
            f.write(body)
    for include, proto in [
        (os.path.join(ROOT, "proto"), "spikeserve/v1/generation.proto"),
        (os.path.join(out, "protos"), "spikeserve_ext/health.proto"),
        (os.path.join(out, "protos"), "spikeserve_ext/reflection.proto"),
    ]:
        rc = protoc.main(["protoc", "-I" + include, "--python_out=" + out,
                          "--grpc_python_out=" + out,
                          os.path.join(include, proto)])
        if rc != 0:
            raise RuntimeError("protoc failed on " + proto)
    sys.path.insert(0, out)
    from spikeserve.v1 import generation_pb2, generation_pb2_grpc
    from spikeserve_ext import health_pb2, health_pb2_grpc
    from spikeserve_ext import reflection_pb2, reflection_pb2_grpc
    return (generation_pb2, generation_pb2_grpc, health_pb2, health_pb2_grpc,
            reflection_pb2, reflection_pb2_grpc)
