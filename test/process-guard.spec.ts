import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';

/** Runs a module body in a fresh Node process (with tsx), resolving with its exit code and output. */
function runScript(body: string): Promise<{ code: number | null; stdout: string }> {
  const source = `
    import { absorbUncaught, installProcessGuard, processFaults } from './src/node/base/process-guard.ts';
    import { createLogger } from './src/node/base/logger.ts';
    installProcessGuard(createLogger('silent'));
    ${body}`;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', source], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let stdout = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.on('close', (code) => resolve({ code, stdout }));
  });
}

describe('process guard', () => {
  it('contains an unhandled promise rejection: counted, and the process keeps running', async () => {
    const { code, stdout } = await runScript(`
      process.on('unhandledRejection', () => setImmediate(() => {
        console.log(JSON.stringify(processFaults()));
        process.exit(0);
      }));
      Promise.reject(new Error('a handler forgot its catch'));
      setInterval(() => {}, 1000);`);
    assert.equal(code, 0);
    assert.deepEqual(JSON.parse(stdout), { absorbedExceptions: 0, unhandledRejections: 1 });
  });

  it('absorbs only the uncaught exceptions a subsystem declared harmless; any other ends the process with 1', async () => {
    const absorbed = await runScript(`
      class LibraryError extends Error {}
      absorbUncaught((e) => e instanceof LibraryError);
      process.on('uncaughtException', () => setImmediate(() => {
        console.log(JSON.stringify(processFaults()));
        process.exit(0);
      }));
      setImmediate(() => { throw new LibraryError('unlistened error event'); });
      setInterval(() => {}, 1000);`);
    assert.equal(absorbed.code, 0);
    assert.equal(JSON.parse(absorbed.stdout).absorbedExceptions, 1);
    const fatal = await runScript(`setImmediate(() => { throw new TypeError('state unknown'); }); setInterval(() => {}, 1000);`);
    assert.equal(fatal.code, 1);
  });
});
