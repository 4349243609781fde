#include "tools/spike_report.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace spikeserve {
namespace {

const char* const kSites[] = {"qkv", "o", "gate_up", "down"};

std::map<std::pair<int, std::string>, const v1::SiteStats*> Index(
    const v1::QuantPlan& plan) {
  std::map<std::pair<int, std::string>, const v1::SiteStats*> m;
  for (const v1::SiteStats& s : plan.sites()) m[{s.layer(), s.site()}] = &s;
  return m;
}

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '|')
      out += "\\|";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

}  // namespace

std::string SpikeReportMarkdown(const v1::QuantPlan& plan,
                                const std::string& svg_name) {
  std::string md = absl::StrCat(
      "# Spike report: ", plan.model().name(), "\n\n", "Model fingerprint `",
      plan.model().hash(), "`; calibration on `",
      plan.calibration().text_file(), "` (", plan.calibration().windows(),
      " windows of ", plan.calibration().window(), " tokens). Spike ratio = ",
      "max over tokens of the token absmax / its median, averaged over ",
      "windows.\n\n");
  absl::StrAppend(&md, "- activation mode: `",
                  v1::ActivationMode_Name(plan.activation_mode()), "`\n");
  absl::StrAppend(&md, "- QFeM (", plan.qfem().selection(), ", alpha ",
                  absl::StrFormat("%.2f", plan.qfem().alpha()), "): ",
                  plan.qfem().modules().empty()
                      ? "none"
                      : absl::StrJoin(plan.qfem().modules(), ", "),
                  "\n");
  absl::StrAppend(
      &md, "- QFeP prefix: ",
      plan.qfep().token_ids().empty()
          ? std::string("none")
          : absl::StrCat("ids [", absl::StrJoin(plan.qfep().token_ids(), ", "),
                         "], text `", Escape(plan.qfep().text()),
                         "`, spike site ", plan.qfep().spike_site(),
                         absl::StrFormat(", score %.1f", plan.qfep().score())),
      "\n");
  absl::StrAppend(&md, "- SmoothQuant: ",
                  plan.smoothing().enabled()
                      ? absl::StrFormat("alpha %.2f", plan.smoothing().alpha())
                      : "off",
                  "; Hadamard before down_proj: ",
                  plan.rotation().down_hadamard() ? "on" : "off",
                  "; block Hadamard after the RMSNorms: ",
                  plan.rotation().norm_hadamard() ? "on" : "off", "\n\n");

  std::vector<const v1::SiteStats*> sorted;
  for (const v1::SiteStats& s : plan.sites()) sorted.push_back(&s);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) {
    return a->spike_ratio() > b->spike_ratio();
  });
  absl::StrAppend(&md, "## Top sites\n\n| site | spike ratio | max absmax | ",
                  "median absmax | QFeM |\n|---|---:|---:|---:|---|\n");
  for (size_t i = 0; i < std::min<size_t>(12, sorted.size()); ++i) {
    const v1::SiteStats& s = *sorted[i];
    absl::StrAppend(
        &md, absl::StrFormat("| %d.%s | %.1f | %.2f | %.3f | %s |\n", s.layer(),
                             s.site(), s.spike_ratio(), s.max_absmax(),
                             s.median_absmax(), s.fp32() ? "FP32" : ""));
  }
  absl::StrAppend(&md, "\n## All layers (spike ratio)\n\n![heatmap](", svg_name,
                  ")\n\n| layer | qkv | o | gate_up | down |\n",
                  "|---:|---:|---:|---:|---:|\n");
  const auto idx = Index(plan);
  for (int l = 0; l < plan.model().layers(); ++l) {
    absl::StrAppend(&md, "| ", l);
    for (const char* site : kSites) {
      auto it = idx.find({l, site});
      absl::StrAppend(&md, " | ",
                      it == idx.end()
                          ? std::string("-")
                          : absl::StrFormat("%.1f%s", it->second->spike_ratio(),
                                            it->second->fp32() ? "*" : ""));
    }
    absl::StrAppend(&md, " |\n");
  }
  absl::StrAppend(&md, "\n`*` = kept in FP32 by QFeM.\n");
  return md;
}

std::string SpikeHeatmapSvg(const v1::QuantPlan& plan) {
  const int layers = plan.model().layers();
  const int cw = 70, ch = 16, left = 40, top = 30;
  const auto idx = Index(plan);
  double max_log = 1.0;
  for (const v1::SiteStats& s : plan.sites()) {
    max_log = std::max(max_log, std::log10(std::max(1.0, s.spike_ratio())));
  }
  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
      "font-family=\"sans-serif\" font-size=\"10\">\n"
      "<text x=\"%d\" y=\"12\">log10 spike ratio (max %.1f); outlined = QFeM"
      "</text>\n",
      left + 4 * cw + 10, top + layers * ch + 10, left, max_log);
  for (int j = 0; j < 4; ++j) {
    absl::StrAppend(&svg,
                    absl::StrFormat("<text x=\"%d\" y=\"%d\">%s</text>\n",
                                    left + j * cw + 4, top - 4, kSites[j]));
  }
  for (int l = 0; l < layers; ++l) {
    absl::StrAppend(&svg, absl::StrFormat("<text x=\"4\" y=\"%d\">%d</text>\n",
                                          top + l * ch + 12, l));
    for (int j = 0; j < 4; ++j) {
      auto it = idx.find({l, kSites[j]});
      const double r = it == idx.end() ? 1.0 : it->second->spike_ratio();
      const double t = std::log10(std::max(1.0, r)) / max_log;  // 0..1
      const int red = int(255 * t), blue = int(255 * (1 - t));
      const bool fp32 = it != idx.end() && it->second->fp32();
      absl::StrAppend(
          &svg, absl::StrFormat(
                    "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" "
                    "fill=\"rgb(%d,64,%d)\" stroke=\"%s\" "
                    "stroke-width=\"%d\"><title>%d.%s: %.1f</title>"
                    "</rect>\n",
                    left + j * cw, top + l * ch, cw - 2, ch - 2, red, blue,
                    fp32 ? "black" : "none", fp32 ? 2 : 0, l, kSites[j], r));
    }
  }
  absl::StrAppend(&svg, "</svg>\n");
  return svg;
}

}  // namespace spikeserve
