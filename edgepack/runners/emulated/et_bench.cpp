// Benchmark one ExecuTorch program inside the emulated aarch64 guest (the .pte twin of
// guest_bench.py). Compiled at set-up with the aarch64 cross compiler against the headers and
// shared libraries of executorch's own aarch64 wheel (see _et_bench.py), so it runs the
// runtime, XNNPACK delegate and kernels an Android app links, without an aarch64 torch.
//
// Usage: et_bench MODEL.pte THREADS WARMUP ITERATIONS
// Loads `forward`, runs WARMUP inferences, emits the start marker, runs ITERATIONS inferences,
// emits the end marker (the insn_count plugin counts guest instructions between the two), and
// prints one JSON line of facts. Exit 2 with a one-line reason when the program is unusable.

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

// libexecutorch_threadpool.so exports these; the wheel ships no header for them
// (extension/threadpool/threadpool.h is absent from its include/ folder).
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  bool _unsafe_reset_threadpool(uint32_t num_threads);
  size_t get_thread_count() const;
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool

namespace {

using executorch::aten::ScalarType;
using executorch::extension::Module;

// Marker syscalls the plugin watches: lseek on fd -1 fails with EBADF and changes nothing.
constexpr off_t kMagicStart = 0x45504B5354415254;
constexpr off_t kMagicEnd = 0x45504B5F454E4421;

long status_kb(const char* key) {  // VmRSS / VmHWM of the emulator process
  std::ifstream status("/proc/self/status");
  std::string line;
  const size_t length = std::strlen(key);
  while (std::getline(status, line)) {
    if (line.compare(0, length, key) == 0 && line.size() > length && line[length] == ':') {
      return std::atol(line.c_str() + length + 1);
    }
  }
  return -1;
}

int fail(const std::string& why) {
  std::fprintf(stderr, "%s\n", why.c_str());
  return 2;
}

// The same input every run: a fixed pseudo-random pattern (kernels do not branch on values,
// but a fixed input keeps even data-dependent paths repeatable).
template <typename T>
void fill(std::vector<uint8_t>& bytes, size_t count, float scale) {
  bytes.resize(count * sizeof(T));
  T* values = reinterpret_cast<T*>(bytes.data());
  uint32_t state = 12345;
  for (size_t i = 0; i < count; ++i) {
    state = state * 1664525u + 1013904223u;
    const float unit = static_cast<float>(state >> 8) / 16777216.0f - 0.5f;  // [-0.5, 0.5)
    values[i] = static_cast<T>(unit * scale);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) return fail("usage: et_bench MODEL.pte THREADS WARMUP ITERATIONS");
  const int threads = std::atoi(argv[2]);
  const int warmup = std::atoi(argv[3]);
  const int iterations = std::atoi(argv[4]);
  if (threads < 1 || warmup < 0 || iterations < 1) return fail("bad THREADS/WARMUP/ITERATIONS");

  executorch::extension::threadpool::get_threadpool()->_unsafe_reset_threadpool(threads);
  const long before_kb = status_kb("VmRSS");

  Module module(argv[1], Module::LoadMode::File);
  auto meta = module.method_meta("forward");
  if (!meta.ok()) return fail("the program has no loadable forward method");
  if (meta->num_inputs() != 1) return fail("expected one input tensor");
  auto info = meta->input_tensor_meta(0);
  if (!info.ok()) return fail("forward's input is not a tensor");
  std::vector<executorch::aten::SizesType> sizes(info->sizes().begin(), info->sizes().end());
  size_t count = 1;
  for (auto size : sizes) count *= static_cast<size_t>(size);

  std::vector<uint8_t> bytes;
  switch (info->scalar_type()) {
    case ScalarType::Float: fill<float>(bytes, count, 4.0f); break;
    case ScalarType::Byte: fill<uint8_t>(bytes, count, 255.0f); break;
    case ScalarType::Char: fill<int8_t>(bytes, count, 255.0f); break;
    default: return fail("the input is not float32, uint8 or int8");
  }
  auto tensor = executorch::extension::from_blob(bytes.data(), sizes, info->scalar_type());
  if (module.load_method("forward") != executorch::runtime::Error::Ok) {
    return fail("forward did not load (a delegate or kernel missing from this runtime?)");
  }

  for (int i = 0; i < warmup; ++i) {
    if (!module.forward(tensor).ok()) return fail("forward failed");
  }
  const auto began = std::chrono::steady_clock::now();  // outside the markers: not counted
  lseek(-1, kMagicStart, SEEK_SET);
  for (int i = 0; i < iterations; ++i) {
    if (!module.forward(tensor).ok()) return fail("forward failed");
  }
  lseek(-1, kMagicEnd, iterations);
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();

  std::printf(
      "{\"quantized\": null, \"wall_s_per_inference\": %.6f, \"rss_before_model_kb\": %ld, "
      "\"rss_after_kb\": %ld, \"hwm_kb\": %ld, \"threads\": %zu}\n",
      elapsed / iterations, before_kb, status_kb("VmRSS"), status_kb("VmHWM"),
      executorch::extension::threadpool::get_threadpool()->get_thread_count());
  return 0;
}
