{
  "targets": [
    {
      "target_name": "kvm_sev",
      "conditions": [
        ["OS=='linux'", {
          "sources": [
            "native/addon.cc",
            "native/errors.cc",
            "native/fd_handle.cc",
            "native/mapping.cc",
            "native/file_state.cc",
            "native/schema.cc",
            "native/enable_cap.cc",
            "native/marshal.cc",
            "native/ioctl.cc",
            "native/vcpu_runner.cc",
            "native/unix_socket.cc",
            "native/eventfd.cc"
          ],
          "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
          "defines": ["NAPI_VERSION=8", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
          "cflags_cc": ["-std=c++17", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter"],
          "cflags_cc!": ["-fno-exceptions"]
        }, {
          "type": "none"
        }]
      ]
    }
  ]
}
