// QuantLinear: accessors, validation, dequantization, act-order reordering, and conversion
// from/to the GPTQ checkpoint layout (see formats.h for every layout).
#include "quant/formats.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/half.h"
#include "io/reader.h"

namespace ignis::quant {

using json = nlohmann::json;

int QuantLinear::q(int64_t n, int64_t k) const {
  if (format == QFormat::kInt8) return int(int8_t(qdata[size_t(n * K + k)])) + 128;
  const uint8_t b = qdata[size_t(n * (K / 2) + k / 2)];
  return (k & 1) ? (b >> 4) : (b & 0xF);
}

void QuantLinear::set_q(int64_t n, int64_t k, int v) {
  if (format == QFormat::kInt8) {
    qdata[size_t(n * K + k)] = uint8_t(int8_t(v - 128));
    return;
  }
  uint8_t& b = qdata[size_t(n * (K / 2) + k / 2)];
  b = (k & 1) ? uint8_t((b & 0x0F) | (v << 4)) : uint8_t((b & 0xF0) | (v & 0xF));
}

size_t QuantLinear::storage_bytes() const {
  const size_t sb = scale_dtype == DType::F32 ? 4 : 2;
  return qdata.size() + scales.size() * sb + zeros.size() + g_idx.size() * 4;
}

float round_scale_up(float s, DType t) {
  float r = round_scale(s, t);
  if (r < s) {  // one unit in the last place up (positive finite values)
    if (t == DType::BF16) r = bf16_to_f32(uint16_t(f32_to_bf16(r) + 1));
    if (t == DType::F16) r = f16_to_f32(uint16_t(f32_to_f16(r) + 1));
  }
  return r;
}

float round_scale(float s, DType t) {
  if (t == DType::BF16) return bf16_to_f32(f32_to_bf16(s));
  if (t == DType::F16) return f16_to_f32(f32_to_f16(s));
  return s;
}

QuantLinear make_quant_linear(QFormat f, int64_t N, int64_t K, int group, bool symmetric, DType scale_dtype) {
  QuantLinear q;
  q.format = f;
  q.N = N;
  q.K = K;
  q.group = f == QFormat::kInt8 ? int(K) : group;
  q.scale_dtype = scale_dtype;
  if (f == QFormat::kInt8) {
    IGNIS_CHECK(symmetric, "int8 quantization is symmetric only");
  } else {
    IGNIS_CHECK(group == 32 || group == 64 || group == 128, "int4 group size must be 32, 64 or 128, got ", group);
    IGNIS_CHECK(K % group == 0, "int4 group size ", group, " does not divide the layer's ", K, " input columns");
  }
  q.qdata.assign(size_t(f == QFormat::kInt8 ? N * K : N * K / 2), f == QFormat::kInt8 ? 0 : 0x88);
  q.scales.assign(size_t(N * q.groups()), 0.f);
  if (!symmetric) q.zeros.assign(size_t(N * q.groups()), 8);
  return q;
}

void QuantLinear::validate(const std::string& what) const {
  IGNIS_CHECK(N > 0 && K > 0, what, ": empty quantized layer (", N, " x ", K, ")");
  if (format == QFormat::kInt8) {
    IGNIS_CHECK(group == K, what, ": int8 layers have one group per row (group size ", K, "), got ", group);
    IGNIS_CHECK(zeros.empty(), what, ": int8 layers are symmetric; zero points are not supported");
    IGNIS_CHECK(g_idx.empty(), what, ": int8 layers have no g_idx");
    IGNIS_CHECK(qdata.size() == size_t(N * K), what, ": int8 weights hold ", qdata.size(), " bytes, expected ",
                N * K, " for ", N, " x ", K);
  } else {
    IGNIS_CHECK(group == 32 || group == 64 || group == 128, what, ": int4 group size must be 32, 64 or 128, got ",
                group);
    IGNIS_CHECK(K % group == 0, what, ": group size ", group, " does not divide the ", K, " input columns");
    IGNIS_CHECK(qdata.size() == size_t(N * K / 2), what, ": int4 weights hold ", qdata.size(), " bytes, expected ",
                N * K / 2, " for ", N, " x ", K);
  }
  IGNIS_CHECK(scale_dtype == DType::F32 || scale_dtype == DType::BF16 || scale_dtype == DType::F16, what,
              ": scales must be f32, bf16 or f16, got ", dtype_name(scale_dtype));
  const int64_t G = groups();
  IGNIS_CHECK(!scales.empty(), what, ": scales are missing");
  IGNIS_CHECK(scales.size() == size_t(N * G), what, ": ", scales.size(), " scales, expected ", N * G, " (", N,
              " rows x ", G, " groups)");
  for (size_t i = 0; i < scales.size(); ++i)
    IGNIS_CHECK(std::isfinite(scales[i]), what, ": scale ", i, " is not finite (", scales[i], ")");
  if (!zeros.empty()) {
    IGNIS_CHECK(zeros.size() == size_t(N * G), what, ": ", zeros.size(), " zero points, expected ", N * G);
    for (size_t i = 0; i < zeros.size(); ++i)
      IGNIS_CHECK(zeros[i] <= 15, what, ": zero point ", i, " is ", int(zeros[i]), ", outside [0, 15]");
  }
  if (!g_idx.empty()) {
    IGNIS_CHECK(g_idx.size() == size_t(K), what, ": g_idx has ", g_idx.size(), " entries, expected ", K);
    std::vector<int64_t> count(size_t(G), 0);
    for (size_t k = 0; k < g_idx.size(); ++k) {
      IGNIS_CHECK(g_idx[k] >= 0 && g_idx[k] < G, what, ": g_idx[", k, "] = ", g_idx[k], " is outside [0, ", G, ")");
      ++count[size_t(g_idx[k])];
    }
    for (int64_t g = 0; g < G; ++g)
      IGNIS_CHECK(count[size_t(g)] == group, what, ": g_idx puts ", count[size_t(g)], " columns in group ", g,
                  ", expected ", group);
  }
}

void dequantize_row(const QuantLinear& q, int64_t n, float* out) {
  for (int64_t k = 0; k < q.K; ++k) out[k] = q.weight(n, k);
}

std::vector<float> dequantize(const QuantLinear& q) {
  std::vector<float> w(size_t(q.N * q.K));
  for (int64_t n = 0; n < q.N; ++n) dequantize_row(q, n, w.data() + n * q.K);
  return w;
}

QuantLinear contiguous_groups(const QuantLinear& q, std::vector<int32_t>& perm) {
  perm.clear();
  if (q.g_idx.empty()) return q;
  perm.resize(size_t(q.K));
  for (int64_t k = 0; k < q.K; ++k) perm[size_t(k)] = int32_t(k);
  std::stable_sort(perm.begin(), perm.end(), [&](int32_t a, int32_t b) { return q.g_idx[size_t(a)] < q.g_idx[size_t(b)]; });
  QuantLinear r = q;
  r.g_idx.clear();
  for (int64_t n = 0; n < q.N; ++n)
    for (int64_t j = 0; j < q.K; ++j) r.set_q(n, j, q.q(n, perm[size_t(j)]));
  return r;
}

// ---- GPTQ ------------------------------------------------------------------------------------------

namespace {

const json* find_key(const json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

}  // namespace

GptqConfig parse_gptq_config(const std::string& json_text, const std::string& what) {
  const json root = parse_json(json_text, what);
  if (!root.is_object()) fail(what, ": not a JSON object");
  const json* qc = find_key(root, "quantization_config");
  const json& j = qc ? *qc : root;  // quantize_config.json holds the keys at the top level
  if (!j.is_object()) fail(what, ": quantization_config is not an object");
  GptqConfig c;
  if (const json* m = find_key(j, "quant_method")) {
    if (!m->is_string() || m->get<std::string>() != "gptq")
      fail(what, ": quant_method ", m->dump(), " is not supported (ignis reads gptq)");
  }
  auto integer = [&](const char* key, int def) {
    const json* v = find_key(j, key);
    if (!v) return def;
    if (!v->is_number_integer()) fail(what, ": quantization_config \"", key, "\" must be an integer");
    return v->get<int>();
  };
  auto boolean = [&](const char* key, bool def) {
    const json* v = find_key(j, key);
    if (!v) return def;
    if (!v->is_boolean()) fail(what, ": quantization_config \"", key, "\" must be true or false");
    return v->get<bool>();
  };
  c.bits = integer("bits", 4);
  if (c.bits != 4 && c.bits != 8) fail(what, ": GPTQ bits = ", c.bits, " is not supported (ignis reads 4 and 8)");
  c.group_size = integer("group_size", 128);
  if (c.bits == 4 && c.group_size != 32 && c.group_size != 64 && c.group_size != 128)
    fail(what, ": GPTQ group_size ", c.group_size, " is not supported for 4 bits (ignis reads 32, 64 and 128)");
  if (c.bits == 8 && c.group_size != -1)
    fail(what, ": GPTQ 8-bit checkpoints must be per channel (group_size -1), got ", c.group_size);
  c.desc_act = boolean("desc_act", false);
  c.sym = boolean("sym", true);
  if (const json* f = find_key(j, "checkpoint_format")) {
    if (!f->is_string()) fail(what, ": checkpoint_format must be a string");
    const std::string s = f->get<std::string>();
    if (s == "gptq_v2")
      c.v2 = true;
    else if (s != "gptq")
      fail(what, ": checkpoint_format \"", s, "\" is not supported (ignis reads gptq and gptq_v2)");
  }
  return c;
}

GptqTensors to_gptq(const QuantLinear& q, bool v2) {
  q.validate("to_gptq");
  const int bits = q.bits(), per = 32 / bits;
  const int64_t N = q.N, K = q.K, G = q.groups();
  IGNIS_CHECK(K % per == 0, "GPTQ layout needs K to be a multiple of ", per, " (got ", N, " x ", K, ")");
  const int64_t NZ = (N + per - 1) / per;  // qzeros words per group row (ceil: see formats.h)
  GptqTensors t;
  t.qweight = Tensor::zeros({K / per, N}, DType::I32);
  t.qzeros = Tensor::zeros({G, NZ}, DType::I32);
  t.scales = Tensor::empty({G, N}, DType::F16);
  const uint32_t mask = (1u << bits) - 1;
  uint32_t* qw = t.qweight.ptr<uint32_t>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k)
      qw[(k / per) * N + n] |= (uint32_t(q.q(n, k)) & mask) << (bits * (k % per));
  uint32_t* qz = t.qzeros.ptr<uint32_t>();
  uint16_t* sc = t.scales.ptr<uint16_t>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t g = 0; g < G; ++g) {
      int z = q.zero(n, g);
      if (!v2) {
        IGNIS_CHECK(z > 0, "to_gptq: zero point 0 (row ", n, ", group ", g,
                    ") cannot be stored in the v1 GPTQ format (it stores zero - 1); write gptq_v2");
        z -= 1;
      }
      qz[g * NZ + n / per] |= (uint32_t(z) & mask) << (bits * (n % per));
      sc[g * N + n] = f32_to_f16(q.scales[size_t(n * G + g)]);
    }
  t.g_idx = Tensor::empty({K}, DType::I32);
  for (int64_t k = 0; k < K; ++k) t.g_idx.ptr<int32_t>()[k] = int32_t(q.group_of(k));
  return t;
}

QuantLinear from_gptq(const GptqTensors& t, const GptqConfig& cfg, const std::string& what) {
  const int bits = cfg.bits, per = 32 / bits;
  if (!t.qweight.defined() || t.qweight.numel() == 0) fail(what, ": qweight is missing");
  if (!t.scales.defined() || t.scales.numel() == 0) fail(what, ": scales are missing");
  if (!t.qzeros.defined() || t.qzeros.numel() == 0) fail(what, ": qzeros is missing");
  auto need = [&](const Tensor& x, const char* name, DType dt) {
    if (x.dtype() != dt)
      fail(what, ".", name, ": type ", dtype_name(x.dtype()), ", expected ", dtype_name(dt));
    if (x.ndim() != 2) fail(what, ".", name, ": shape ", x.shape_str(), " is not 2-D");
  };
  need(t.qweight, "qweight", DType::I32);
  need(t.qzeros, "qzeros", DType::I32);
  if (t.scales.dtype() != DType::F16 && t.scales.dtype() != DType::BF16 && t.scales.dtype() != DType::F32)
    fail(what, ".scales: type ", dtype_name(t.scales.dtype()), ", expected F16");
  if (t.scales.ndim() != 2) fail(what, ".scales: shape ", t.scales.shape_str(), " is not 2-D");
  const int64_t K = t.qweight.dim(0) * per, N = t.qweight.dim(1), G = t.scales.dim(0);
  if (t.scales.dim(1) != N)
    fail(what, ".scales: shape ", t.scales.shape_str(), " does not match qweight ", t.qweight.shape_str(), " (expected [",
         G, ", ", N, "])");
  if (G <= 0 || K % G != 0) fail(what, ".scales: ", G, " groups do not divide the ", K, " input columns");
  const int group = int(K / G);
  const int want_group = cfg.group_size == -1 ? int(K) : cfg.group_size;
  if (group != want_group)
    fail(what, ": scales hold ", G, " groups for ", K, " input columns (group size ", group,
         ") but the quantization config says group_size ", cfg.group_size);
  const int64_t NZ = (N + per - 1) / per;
  if (t.qzeros.dim(0) != G || t.qzeros.dim(1) != NZ)
    fail(what, ".qzeros: shape ", t.qzeros.shape_str(), ", expected [", G, ", ", NZ, "]");
  if (t.g_idx.defined() && t.g_idx.numel() > 0) {
    if (t.g_idx.dtype() != DType::I32 || t.g_idx.ndim() != 1 || t.g_idx.dim(0) != K)
      fail(what, ".g_idx: type ", dtype_name(t.g_idx.dtype()), " shape ", t.g_idx.shape_str(), ", expected I32 [", K,
           "]");
  }

  const uint32_t mask = (1u << bits) - 1;
  const uint32_t* qz = t.qzeros.ptr<uint32_t>();
  std::vector<uint8_t> zeros(size_t(N * G));
  bool all_mid = true;
  const int mid = 1 << (bits - 1);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t g = 0; g < G; ++g) {
      int z = int((qz[g * NZ + n / per] >> (bits * (n % per))) & mask);
      if (!cfg.v2) z = (z + 1) & int(mask);  // v1 stores zero - 1 (AutoGPTQ adds 1 back, modulo 2^bits)
      zeros[size_t(n * G + g)] = uint8_t(z);
      all_mid &= z == mid;
    }
  if (bits == 8 && !all_mid)
    fail(what, ": 8-bit GPTQ layers with zero points other than 128 (asymmetric) are not supported");

  QuantLinear q;
  q.format = bits == 8 ? QFormat::kInt8 : QFormat::kInt4;
  q.N = N;
  q.K = K;
  q.group = group;
  q.scale_dtype = t.scales.dtype() == DType::F32 ? DType::F32 : t.scales.dtype();
  q.qdata.assign(size_t(bits == 8 ? N * K : N * K / 2), 0);
  const uint32_t* qw = t.qweight.ptr<uint32_t>();
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < N; ++n) q.set_q(n, k, int((qw[(k / per) * N + n] >> (bits * (k % per))) & mask));
  q.scales.resize(size_t(N * G));
  for (int64_t g = 0; g < G; ++g)
    for (int64_t n = 0; n < N; ++n) {
      float s;
      if (t.scales.dtype() == DType::F16)
        s = f16_to_f32(t.scales.ptr<uint16_t>()[g * N + n]);
      else if (t.scales.dtype() == DType::BF16)
        s = bf16_to_f32(t.scales.ptr<uint16_t>()[g * N + n]);
      else
        s = t.scales.ptr<float>()[g * N + n];
      q.scales[size_t(n * G + g)] = s;
    }
  if (!all_mid) q.zeros = std::move(zeros);
  if (t.g_idx.defined() && t.g_idx.numel() > 0) {
    const int32_t* gi = t.g_idx.ptr<int32_t>();
    bool trivial = true;
    for (int64_t k = 0; k < K; ++k) trivial &= gi[k] == k / group;
    if (!trivial) q.g_idx.assign(gi, gi + K);
  }
  q.validate(what);
  return q;
}

}  // namespace ignis::quant
