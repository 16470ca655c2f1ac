// Module entry: per-environment data and the teardown that closes what JS left open.
#include "common.h"

namespace kvmsev {

void CloseAllFds(AddonData* data);
void UnmapAll(AddonData* data);
void StopAllRunners(AddonData* data);

AddonData* GetData(Napi::Env env) { return env.GetInstanceData<AddonData>(); }

// At env exit (process or worker): stop vCPU threads, close fds, unmap memory. The AddonData
// itself is deliberately leaked: wrappers finalized after this point still look at it.
static void Cleanup(AddonData* data) {
  data->closing = true;
  StopAllRunners(data);
  {
    // Socket threads see `closing` within their 100 ms poll; their thread-safe functions answer
    // napi_closing from now on.
    std::lock_guard<std::mutex> g(data->threadsMu);
    for (auto& t : data->threads)
      if (t.thread.joinable()) t.thread.join();
    data->threads.clear();
  }
  CloseAllFds(data);
  UnmapAll(data);
}

static void LeakData(Napi::Env, AddonData*) {}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData<AddonData, LeakData>(data);
  env.AddCleanupHook(Cleanup, data);
  InitFdHandle(env, exports, data);
  InitMapping(env, exports, data);
  InitIoctl(env, exports);
  InitVcpuRunner(env, exports, data);
  InitUnixSocket(env, exports);
  InitEventfd(env, exports);
  exports.Set("abiVersion", Napi::Number::New(env, 1));
  return exports;
}

NODE_API_MODULE(kvm_sev, Init)

}  // namespace kvmsev
