// Preloaded into the gateway by `BENCH_GC=1 node bench/memory.mjs` (NODE_OPTIONS=--expose-gc
// --require ...): a full garbage collection every second, so RSS readings show what is still
// referenced rather than what V8 has not collected yet. Only for the leak check; it costs CPU.
setInterval(() => globalThis.gc(), 1000).unref();
