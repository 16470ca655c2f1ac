// Node-shaped errors. The TS layer installs a factory so that native and mock errors are the same class.
#include <cerrno>
#include <cstring>

#include "common.h"

namespace kvmsev {

const char* ErrnoName(int err) {
  const char* n = strerrorname_np(err);  // glibc >= 2.32
  return n ? n : "EUNKNOWN";
}

Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall, const char* request, const char* path) {
  AddonData* data = GetData(env);
  if (data && !data->errorFactory.IsEmpty()) {
    Napi::Value v = data->errorFactory.Call({Napi::Number::New(env, err), Napi::String::New(env, syscall),
                                             request ? Napi::String::New(env, request) : env.Undefined(),
                                             path ? Napi::String::New(env, path) : env.Undefined()});
    if (v.IsObject()) return Napi::Error(env, v);
  }
  std::string msg = std::string(ErrnoName(err)) + ": " + strerror(err) + ", " + syscall;
  if (request) msg += std::string(" ") + request;
  if (path) msg += std::string(" '") + path + "'";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("errno", Napi::Number::New(env, -err));
  e.Set("code", Napi::String::New(env, ErrnoName(err)));
  e.Set("syscall", Napi::String::New(env, syscall));
  if (request) e.Set("request", Napi::String::New(env, request));
  if (path) e.Set("path", Napi::String::New(env, path));
  return e;
}

Napi::Error CodedError(Napi::Env env, const char* code, const std::string& msg) {
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

Napi::Error ArgTypeError(Napi::Env env, const std::string& msg) {
  Napi::Error e = Napi::TypeError::New(env, msg);
  e.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_TYPE"));
  return e;
}

Napi::Error ArgValueError(Napi::Env env, const std::string& msg) {
  Napi::Error e = Napi::TypeError::New(env, msg);
  e.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_VALUE"));
  return e;
}

Napi::Error ArgRangeError(Napi::Env env, const std::string& msg) {
  Napi::Error e = Napi::RangeError::New(env, msg);
  e.Set("code", Napi::String::New(env, "ERR_OUT_OF_RANGE"));
  return e;
}

// Numbers are read with one N-API call (which also says whether it is a number): these run on every
// ioctl, where each call into N-API is a measurable part of the cost.
uint32_t ArgU32(const Napi::Value& v, const char* name) {
  Napi::Env env = v.Env();
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok)
    throw ArgTypeError(env, std::string("The \"") + name + "\" argument must be of type number");
  if (!(d >= 0 && d <= 4294967295.0) || d != static_cast<double>(static_cast<uint64_t>(d)))
    throw ArgRangeError(env, std::string("The value of \"") + name +
                                 "\" is out of range. It must be an integer >= 0 and <= 4294967295");
  return static_cast<uint32_t>(d);
}

uint64_t ArgSize(const Napi::Value& v, const char* name) {
  Napi::Env env = v.Env();
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok) {
    if (v.IsBigInt()) {
      bool lossless = false;
      uint64_t x = v.As<Napi::BigInt>().Uint64Value(&lossless);
      if (!lossless) throw ArgRangeError(env, std::string("The value of \"") + name + "\" is out of range of u64");
      return x;
    }
    throw ArgTypeError(env, std::string("The \"") + name + "\" argument must be of type number or bigint");
  }
  if (!(d >= 0 && d <= 9007199254740991.0) || d != static_cast<double>(static_cast<uint64_t>(d)))
    throw ArgRangeError(env,
                        std::string("The value of \"") + name + "\" is out of range. It must be a safe integer >= 0");
  return static_cast<uint64_t>(d);
}

}  // namespace kvmsev
