"""The spikeserve binary as a child process for the Python tests and
benchmarks: its log read in the background, the ports it reports
(gRPC, /metrics, the OpenAI API; any may be 0 = free port) found in it."""
import re
import signal
import subprocess
import threading

PORT_LINES = {
    "grpc": re.compile(r"listening on [^ ]*:(\d+)"),
    "metrics": re.compile(r"metrics on port (\d+)"),
    "http": re.compile(r"OpenAI HTTP API on port (\d+)"),
}


class ServerProcess:
    def __init__(self, cmd, env=None, timeout=300):
        """Starts `cmd` and waits until it logs "health SERVING" (or exits).
        RuntimeError with the log when it does not serve within `timeout`."""
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True,
                                     env=env)
        self.log, self.ports = [], {}
        ready = threading.Event()

        def pump():  # keeps the pipe drained
            for line in self.proc.stderr:
                self.log.append(line)
                for name, pattern in PORT_LINES.items():
                    m = pattern.search(line)
                    if m and name not in self.ports:
                        self.ports[name] = int(m.group(1))
                if "health SERVING" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(timeout) or "grpc" not in self.ports or \
                self.proc.poll() is not None:
            self.proc.kill()
            raise RuntimeError("spikeserve did not serve:\n" + "".join(self.log))

    def stop(self, timeout=120):
        """SIGTERM (a drain), then the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.proc.stderr.close()
        return code
