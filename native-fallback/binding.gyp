{
  "targets": [
    {
      "target_name": "sectunnel_native",
      "sources": [
        "src/addon.c",
        "src/aead.c",
        "src/io.c",
        "src/tap.c",
        "src/offload.c",
        "src/udp.c",
        "src/packet.c"
      ],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
