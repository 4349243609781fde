// Bearer token and TLS: every Generation RPC without the right token gets
// UNAUTHENTICATED while health stays open; a TLS server refuses plaintext
// clients; mutual TLS refuses clients without a certificate. Certificates
// are self-signed, made by the test with openssl.
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/server_fixture.h"

namespace spikeserve::testing {
namespace {

using ::grpc::StatusCode;
using ::testing::HasSubstr;

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A self-signed certificate for 127.0.0.1/localhost: returns the paths
// prefix + ".crt" / ".key".
std::string MakeCert(const std::string& name) {
  const std::string dir = ::testing::TempDir();
  const std::string prefix = dir + "/" + name;
  const std::string cmd = absl::StrCat(
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
      "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout ",
      prefix, ".key -out ", prefix, ".crt >/dev/null 2>&1");
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  return prefix;
}

class SecurityTest : public ServerTest {
 protected:
  // spikeserve-health-probe's exit code against this server with `flags`.
  int Probe(const std::string& flags) {
    const int rc =
        std::system(absl::StrCat(SPIKESERVE_PROBE_BINARY,
                                 " --addr 127.0.0.1:", server_->port(),
                                 " --timeout 10s ", flags, " > /dev/null 2>&1")
                        .c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  }
  std::unique_ptr<v1::Generation::Stub> StubWith(
      std::shared_ptr<grpc::ChannelCredentials> creds) {
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("localhost");
    return v1::Generation::NewStub(grpc::CreateCustomChannel(
        "127.0.0.1:" + std::to_string(server_->port()), creds, args));
  }
};

TEST_F(SecurityTest, EveryRpcButHealthNeedsTheToken) {
  ServerOptions o = DefaultOptions();
  o.auth_token = "s3cret-token";
  StartServer(o);
  // (name, call with a context)
  using Call = std::function<grpc::Status(grpc::ClientContext*)>;
  const std::vector<std::pair<std::string, Call>> rpcs = {
      {"Generate",
       [&](grpc::ClientContext* c) {
         v1::GenerateResponse r;
         return stub_->Generate(c, TokenRequest({65, 66}, 2), &r);
       }},
      {"GenerateStream",
       [&](grpc::ClientContext* c) {
         auto reader = stub_->GenerateStream(c, TokenRequest({65, 66}, 2));
         v1::GenerateResponse m;
         while (reader->Read(&m)) {
         }
         return reader->Finish();
       }},
      {"Tokenize",
       [&](grpc::ClientContext* c) {
         v1::TokenizeRequest q;
         q.set_text("ab");
         v1::TokenizeResponse r;
         return stub_->Tokenize(c, q, &r);
       }},
      {"Detokenize",
       [&](grpc::ClientContext* c) {
         v1::DetokenizeRequest q;
         q.add_ids(65);
         v1::DetokenizeResponse r;
         return stub_->Detokenize(c, q, &r);
       }},
      {"GetModelInfo",
       [&](grpc::ClientContext* c) {
         v1::ModelInfo r;
         return stub_->GetModelInfo(c, {}, &r);
       }},
      {"Abort",
       [&](grpc::ClientContext* c) {
         v1::AbortRequest q;
         q.add_request_ids("x");
         v1::AbortResponse r;
         return stub_->Abort(c, q, &r);
       }},
  };
  for (const auto& [name, call] : rpcs) {
    for (const std::string header :
         {"", "Bearer wrong-token", "s3cret-token", "Bearer s3cret-tokenX"}) {
      grpc::ClientContext c;
      if (!header.empty()) c.AddMetadata("authorization", header);
      const grpc::Status s = call(&c);
      EXPECT_EQ(s.error_code(), StatusCode::UNAUTHENTICATED)
          << name << " with '" << header << "'";
      EXPECT_THAT(s.error_message(), ::testing::Not(HasSubstr("s3cret")));
    }
    // The scheme's case does not matter (RFC 9110); the token's does.
    for (const std::string header :
         {"Bearer s3cret-token", "bearer s3cret-token",
          "BEARER s3cret-token"}) {
      grpc::ClientContext ok;
      ok.AddMetadata("authorization", header);
      EXPECT_TRUE(call(&ok).ok()) << name << " with '" << header << "'";
    }
    grpc::ClientContext upper;
    upper.AddMetadata("authorization", "Bearer S3CRET-TOKEN");
    EXPECT_EQ(call(&upper).error_code(), StatusCode::UNAUTHENTICATED) << name;
  }
  // Health needs no token.
  EXPECT_EQ(Health("spikeserve.v1.Generation"),
            grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(SecurityTest, TlsServerRefusesPlaintextClients) {
  const std::string cert = MakeCert("server");
  ServerOptions o = DefaultOptions();
  o.tls = {cert + ".crt", cert + ".key", ""};
  StartServer(o);
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ReadFile(cert + ".crt");
  auto tls_stub = StubWith(grpc::SslCredentials(ssl));
  grpc::ClientContext c1;
  v1::GenerateResponse r;
  ASSERT_TRUE(tls_stub->Generate(&c1, TokenRequest({65, 66}, 3), &r).ok());
  EXPECT_EQ(r.tokens_size(), 3);
  // The fixture's stub_ is plaintext.
  grpc::ClientContext c2;
  c2.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  EXPECT_EQ(stub_->Generate(&c2, TokenRequest({65, 66}, 3), &r).error_code(),
            StatusCode::UNAVAILABLE);
  // The health probe (Kubernetes exec probes under TLS: the kubelet's gRPC
  // probes are plaintext) passes over TLS with the certificate, under a
  // name the certificate carries, and fails in plaintext.

  EXPECT_EQ(Probe("--tls_ca " + cert + ".crt"), 0);
  EXPECT_EQ(Probe("--tls_ca " + cert + ".crt --tls_server_name localhost"), 0);
  EXPECT_EQ(Probe("--tls_ca " + cert + ".crt --tls_server_name other.example"),
            1);
  EXPECT_EQ(Probe(""), 1);
}

// The OpenAI API serves the same certificate and token as gRPC (curl is
// the HTTPS client); mutual TLS, which it cannot verify, refuses the start.
TEST_F(SecurityTest, HttpApiUsesTheSameTlsAndToken) {
  const std::string cert = MakeCert("http-server");
  ServerOptions o = DefaultOptions();
  o.tls = {cert + ".crt", cert + ".key", ""};
  o.auth_token = "tok-1";
  o.http_bind = "127.0.0.1:0";
  StartServer(o);
  const int port = server_->http_port();
  auto curl = [&](const std::string& header) {
    const std::string cmd =
        absl::StrCat("curl -s --max-time 10 --cacert ", cert,
                     ".crt --resolve localhost:", port, ":127.0.0.1 ", header,
                     " https://localhost:", port, "/v1/models");
    std::string out;
    if (FILE* p = popen(cmd.c_str(), "r")) {
      char buf[4096];
      for (size_t n; (n = fread(buf, 1, sizeof(buf), p)) > 0;)
        out.append(buf, n);
      pclose(p);
    }
    return out;
  };
  EXPECT_THAT(curl("-H 'Authorization: Bearer tok-1'"),
              HasSubstr("\"object\":\"list\""));
  EXPECT_THAT(curl(""), HasSubstr("missing bearer token"));
  // Plain HTTP gets no HTTP answer from the TLS port.
  EXPECT_EQ(HttpRequest(port, "GET", "/health").status, 0);
  TearDown();

  o.tls.client_ca_file = cert + ".crt";
  auto s = SpikeServer::Start(o);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("--http_port -1"));
}

TEST_F(SecurityTest, MutualTlsRequiresAClientCertificate) {
  const std::string server = MakeCert("mtls-server");
  const std::string client = MakeCert("mtls-client");
  ServerOptions o = DefaultOptions();
  o.tls = {server + ".crt", server + ".key", client + ".crt"};
  StartServer(o);
  grpc::SslCredentialsOptions without;
  without.pem_root_certs = ReadFile(server + ".crt");
  grpc::SslCredentialsOptions with = without;
  with.pem_private_key = ReadFile(client + ".key");
  with.pem_cert_chain = ReadFile(client + ".crt");
  v1::GenerateResponse r;
  grpc::ClientContext c1;
  c1.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  EXPECT_FALSE(StubWith(grpc::SslCredentials(without))
                   ->Generate(&c1, TokenRequest({65}, 2), &r)
                   .ok());
  grpc::ClientContext c2;
  EXPECT_TRUE(StubWith(grpc::SslCredentials(with))
                  ->Generate(&c2, TokenRequest({65}, 2), &r)
                  .ok());
  // The health probe presents a client certificate when given one.
  const std::string trust =
      "--tls_ca " + server + ".crt --tls_server_name localhost";
  EXPECT_EQ(Probe(trust), 1);
  EXPECT_EQ(Probe(trust + " --tls_cert " + client + ".crt --tls_key " + client +
                  ".key"),
            0);
  EXPECT_EQ(Probe("--tls_cert " + client + ".crt --tls_key " + client + ".key"),
            2);  // needs --tls_ca
}

TEST_F(SecurityTest, BadTlsFilesFailTheStartWithTheirName) {
  ServerOptions o = DefaultOptions();
  o.tls = {"/nonexistent/server.crt", "/nonexistent/server.key", ""};
  auto s = SpikeServer::Start(o);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()),
              HasSubstr("/nonexistent/server.crt"));
  o.tls = {GetTinyModelFiles().plan, GetTinyModelFiles().plan, ""};
  s = SpikeServer::Start(o);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("not a PEM file"));
}

// Issue 23 D11: a certificate with another certificate's key fails the
// start naming both files, not as "cannot listen on ... (port taken)".
TEST_F(SecurityTest, CertificateAndKeyMismatchIsNamed) {
  const std::string a = MakeCert("mismatch-a");
  const std::string b = MakeCert("mismatch-b");
  ServerOptions o = DefaultOptions();
  o.tls = {a + ".crt", b + ".key", ""};
  auto s = SpikeServer::Start(o);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.status().message()),
              HasSubstr(absl::StrCat("the TLS private key ", b,
                                     ".key does not match the certificate ", a,
                                     ".crt")));
  // A key file without a key, and a certificate file without a certificate.
  o.tls = {a + ".crt", a + ".crt", ""};
  s = SpikeServer::Start(o);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()),
              HasSubstr("has no readable private key"));
  o.tls = {a + ".key", a + ".key", ""};
  s = SpikeServer::Start(o);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()),
              HasSubstr("has no readable certificate"));
  // The matching pair still starts.
  o.tls = {a + ".crt", a + ".key", ""};
  s = SpikeServer::Start(o);
  ASSERT_TRUE(s.ok()) << s.status();
}

}  // namespace
}  // namespace spikeserve::testing
