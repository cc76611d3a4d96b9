// Entry point of an engine worker thread: loads biscuit-wasm quietly (its "biscuit-wasm loading"
// banner and Node's ExperimentalWarning would reach the gateway's output) from the compiled module the
// pool shares when it can, then runs workerCalls.ts.
import { workerData } from 'node:worker_threads';
import { installSharedWasm } from './sharedWasm.ts';
import type { EngineWorkerInit } from './workerProtocol.ts';

await installSharedWasm((workerData as EngineWorkerInit).wasmModule);
await import('./loadBiscuitQuietly.ts');
await import('./workerCalls.ts');
