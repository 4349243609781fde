// The INT8 activations of one linear call (method.md §3): the scales its
// mode picks, then the rows rounded with them. Shared by the W8A8 and W4A8
// linears, so both quantize a given input identically.
#ifndef SPIKESERVE_RUNTIME_LINEAR_ACTIVATION_QUANT_H_
#define SPIKESERVE_RUNTIME_LINEAR_ACTIVATION_QUANT_H_

#include <cstdint>

#include "runtime/linear/linear.h"
#include "runtime/linear/quantize.h"

namespace spikeserve {

// row_scale[in.m] and xq[in.m][k] for the input rows in.x [in.m][k].
// static_absmax: the calibrated input absmax of kPerTensorStatic.
void QuantizeActivations(const LinearInput& in, int k, ActQuantMode mode,
                         float static_absmax, float* row_scale, int8_t* xq);

}  // namespace spikeserve

#endif  // SPIKESERVE_RUNTIME_LINEAR_ACTIVATION_QUANT_H_
