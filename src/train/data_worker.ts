/**
 * The data worker (a worker_threads entry point, started by loader.ts):
 * opens the loader's data set from its spec and makes the batches the main
 * thread asks for, one at a time, in the order asked. Batches go back as
 * transferred typed arrays.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { BatchMaker, type LoaderSpec, type RawBatch } from './loader.js';

const port = parentPort!;
let maker: BatchMaker;
try {
  maker = new BatchMaker(workerData as LoaderSpec);
  port.postMessage({ ready: true });
} catch (err) {
  port.postMessage({ ready: false, error: { name: (err as Error).name, message: (err as Error).message } });
  process.exit(1);
}

let queue: Promise<void> = Promise.resolve();
port.on('message', (m: { key: string; epoch: number; index: number }) => {
  queue = queue.then(async () => {
    try {
      const batch: RawBatch = await maker.make(m.epoch, m.index);
      port.postMessage({ key: m.key, batch }, [batch.x.buffer, batch.target.buffer, batch.labels.buffer] as ArrayBuffer[]);
    } catch (err) {
      port.postMessage({ key: m.key, error: { name: (err as Error).name, message: (err as Error).message } });
    }
  });
});
