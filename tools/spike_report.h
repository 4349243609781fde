// The calibration spike report: a markdown table and an SVG heatmap
// (layers x sites, log10 spike ratio), written next to the plan.
#ifndef SPIKESERVE_TOOLS_SPIKE_REPORT_H_
#define SPIKESERVE_TOOLS_SPIKE_REPORT_H_

#include <string>

#include "spikeserve/v1/quant_plan.pb.h"

namespace spikeserve {

// Markdown: the chosen settings, the QFeP prefix, the top sites by ratio
// and the full layer x site table.
std::string SpikeReportMarkdown(const v1::QuantPlan& plan,
                                const std::string& svg_name);

// A self-contained SVG heatmap, one cell per (layer, site), colour by
// log10(spike ratio), QFeM sites outlined.
std::string SpikeHeatmapSvg(const v1::QuantPlan& plan);

}  // namespace spikeserve

#endif  // SPIKESERVE_TOOLS_SPIKE_REPORT_H_
