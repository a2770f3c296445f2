import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { RemoteNode } from '../src/node/node.ts';
import { InvalidParametersError } from '../src/node/services/errors.ts';
import { type StandaloneService, renderArguments } from '../src/node/services/service.ts';
import type { ServiceInput } from '../src/node/services/definition.ts';
import { testConfig } from './helpers/daemon.ts';
import { captureLogs } from './helpers/log-capture.ts';
import { tempDir } from './helpers/temp.ts';

type TestContext = { after(fn: () => unknown): void };

const randomPeerId = () => randomBytes(20).toString('hex');

const echo = (name = 'echo', extra: Partial<Extract<ServiceInput, { kind: 'STANDALONE' }>> = {}): ServiceInput => ({
  kind: 'STANDALONE',
  name,
  description: 'Echoes its text',
  executable: '/bin/echo',
  args: ['--', '{{text}}'],
  parameters: [{ name: 'text', type: 'string', required: true, maxLength: 100 }],
  ...extra,
});

/** A node on `dir` (its own data dir), stopped after the test unless the test stops it first. */
async function nodeOn(
  t: TestContext,
  dir: string,
  settings: Record<string, string> = {},
  logger = captureLogs().logger,
): Promise<RemoteNode> {
  const node = await RemoteNode.start(testConfig(dir, settings), { logger });
  t.after(() => node.stop('test finished'));
  return node;
}

function codeOf(code: string) {
  return (error: unknown) => {
    assert.equal((error as { code?: string }).code, code, String(error));
    return true;
  };
}

describe('service registry', () => {
  it('validates definitions with typed errors', async (t) => {
    const node = await nodeOn(t, tempDir(t));
    const registry = node.services;
    await assert.rejects(registry.register(echo('Bad Name')), codeOf('SERVICE_INVALID'));
    await assert.rejects(registry.register(echo('x', { executable: 'relative/echo' })), codeOf('SERVICE_INVALID'));
    await assert.rejects(registry.register(echo('x', { args: ['{{nope}}'] })), (error: unknown) => {
      assert.equal((error as { code?: string }).code, 'SERVICE_INVALID');
      assert.match(String(error), /nope/);
      return true;
    });
    await assert.rejects(registry.register(echo('x', { executable: '/nonexistent/tool' })), codeOf('SERVICE_EXECUTABLE_MISSING'));
    const notExecutable = join(tempDir(t), 'script.sh');
    writeFileSync(notExecutable, '#!/bin/sh\n');
    await assert.rejects(registry.register(echo('x', { executable: notExecutable })), codeOf('SERVICE_EXECUTABLE_MISSING'));
    await assert.rejects(registry.register({ kind: 'DATA', name: 'blob', path: '/nonexistent/blob' }), codeOf('DATA_FILE_MISSING'));
    await assert.rejects(
      registry.register(echo('x', { interfaces: { stdin: false, stdout: true, stderr: true, inputs: ['../etc/passwd'], outputs: [] } })),
      codeOf('SERVICE_INVALID'),
    );
    const first = await registry.register(echo());
    assert.match(first.id, /^[0-9a-f]{32}$/);
    await assert.rejects(registry.register(echo()), codeOf('SERVICE_NAME_TAKEN'));
    assert.deepEqual(
      registry.list().map((s) => s.name),
      ['echo'],
    );
  });

  it('refuses limits above the node maxima', async (t) => {
    const { ServiceRegistry } = await import('../src/node/services/service-registry.ts');
    const node = await nodeOn(t, tempDir(t));
    const registry = new ServiceRegistry({
      store: node.components.serviceStore,
      bus: node.bus,
      logger: captureLogs().logger,
      servicesDir: null,
      maxLimits: () => ({ memoryBytes: 1024 * 1024, network: false }),
    });
    await registry.start();
    await assert.rejects(registry.register(echo('big', { limits: { memoryBytes: 2 * 1024 * 1024 } })), codeOf('SERVICE_LIMIT_EXCEEDED'));
    await assert.rejects(registry.register(echo('net', { limits: { network: true } })), codeOf('SERVICE_LIMIT_EXCEEDED'));
    const ok = await registry.register(echo('small', { limits: { memoryBytes: 1024 * 1024, network: false } }));
    assert.equal(ok.kind === 'STANDALONE' && ok.limits.memoryBytes, 1024 * 1024);
  });

  it('persists services in SQLite across a node restart, data files with their hash', async (t) => {
    const dir = tempDir(t);
    const dataFile = join(tempDir(t), 'blob.bin');
    writeFileSync(dataFile, 'hello services');
    let node = await nodeOn(t, dir);
    const events: string[] = [];
    node.bus.on('service.registered', (e) => events.push(`registered ${e.payload.name} ${e.payload.kind}`));
    node.bus.on('service.removed', (e) => events.push(`removed ${e.payload.name}`));
    const kept = await node.services.register(echo('echo', { allowedPeers: [randomPeerId()] }));
    const data = await node.services.register({ kind: 'DATA', name: 'blob', description: 'a file', path: dataFile });
    const gone = await node.services.register(echo('gone'));
    assert.equal(await node.services.remove(gone.id), true);
    assert.equal(await node.services.remove(gone.id), false);
    assert.deepEqual(events, ['registered echo STANDALONE', 'registered blob DATA', 'registered gone STANDALONE', 'removed gone']);
    assert.equal(data.kind === 'DATA' && data.sha256, createHash('sha256').update('hello services').digest('hex'));
    await node.stop('restart');

    node = await nodeOn(t, dir);
    assert.deepEqual(
      node.services
        .list()
        .map((s) => s.name)
        .sort(),
      ['blob', 'echo'],
    );
    assert.deepEqual(node.services.get(kept.id), kept);
    assert.deepEqual(node.services.byName('blob'), data);
    assert.equal(node.services.get(gone.id), undefined);
  });

  it('reads the services directory: good files registered, bad ones logged and skipped, removed files removed', async (t) => {
    const dir = tempDir(t);
    const servicesDir = join(dir, 'services');
    mkdirSync(servicesDir);
    writeFileSync(join(servicesDir, 'echo.json'), JSON.stringify(echo()));
    writeFileSync(join(servicesDir, 'upper.json'), JSON.stringify(echo('upper', { description: 'second' })));
    writeFileSync(join(servicesDir, 'broken.json'), '{ not json');
    writeFileSync(join(servicesDir, 'invalid.json'), JSON.stringify(echo('invalid', { executable: '/nonexistent/tool' })));
    writeFileSync(join(servicesDir, 'notes.txt'), 'not a service');
    const logs = captureLogs('warn');
    let node = await nodeOn(t, dir, {}, logs.logger);
    assert.deepEqual(
      node.services
        .list()
        .map((s) => `${s.name}:${s.source}`)
        .sort(),
      ['echo:file', 'upper:file'],
    );
    const skipped = logs.lines.filter((l) => l.msg === 'service file skipped');
    assert.deepEqual(skipped.map((l) => l.path).sort(), [join(servicesDir, 'broken.json'), join(servicesDir, 'invalid.json')]);
    assert.match(String(skipped.find((l) => l.path === join(servicesDir, 'invalid.json'))?.reason), /does not exist/);
    const echoId = node.services.byName('echo')?.id;
    await node.stop('restart');

    rmSync(join(servicesDir, 'upper.json'));
    node = await nodeOn(t, dir);
    assert.deepEqual(
      node.services.list().map((s) => s.name),
      ['echo'],
    );
    assert.equal(node.services.byName('echo')?.id, echoId, 'an unchanged file keeps its service id');
  });

  it('a services directory that cannot be listed is logged, keeps its file services, and the node starts', async (t) => {
    const dir = tempDir(t);
    mkdirSync(join(dir, 'services'));
    writeFileSync(join(dir, 'services', 'echo.json'), JSON.stringify(echo()));
    let node = await nodeOn(t, dir);
    const kept = node.services.byName('echo');
    await node.stop('restart');
    rmSync(join(dir, 'services'), { recursive: true });
    writeFileSync(join(dir, 'services'), 'a file where the directory was');
    const logs = captureLogs('warn');
    node = await nodeOn(t, dir, {}, logs.logger);
    assert.deepEqual(node.services.list(), [kept]);
    assert.match(String(logs.lines.find((l) => l.msg === 'services directory not read')?.reason), /ENOTDIR/);
  });

  it('an API service keeps its name against a services-directory file of the same name', async (t) => {
    const dir = tempDir(t);
    let node = await nodeOn(t, dir);
    const api = await node.services.register(echo());
    await node.stop('restart');
    mkdirSync(join(dir, 'services'));
    writeFileSync(join(dir, 'services', 'echo.json'), JSON.stringify(echo('echo', { description: 'from a file' })));
    const logs = captureLogs('warn');
    node = await nodeOn(t, dir, {}, logs.logger);
    assert.deepEqual(node.services.list(), [api]);
    assert.match(String(logs.lines.find((l) => l.msg === 'service file skipped')?.reason), /already registered/);
  });

  it('the example definition under configs/services validates', async (t) => {
    const dir = tempDir(t);
    const node = await nodeOn(t, dir, { 'services.services_dir': join(import.meta.dirname, '..', 'configs', 'services') });
    assert.equal(node.services.byName('echo')?.source, 'file');
  });

  it('search shows a service only to the peers its allow-list names', async (t) => {
    const node = await nodeOn(t, tempDir(t));
    const [allowed, other] = [randomPeerId(), randomPeerId()];
    await node.services.register(echo('public-echo', { description: 'Echo for everyone' }));
    const privateOne = await node.services.register(echo('private-echo', { description: 'Echo for one peer', allowedPeers: [allowed] }));
    assert.equal(node.services.allows(privateOne, allowed), true);
    assert.equal(node.services.allows(privateOne, other), false);
    assert.deepEqual(
      node.services.search('echo', null, allowed, 10).map((s) => s.name),
      ['private-echo', 'public-echo'],
    );
    assert.deepEqual(
      node.services.search('echo', null, other, 10).map((s) => s.name),
      ['public-echo'],
    );
    assert.deepEqual(
      node.services.search('ONE PEER', null, other, 10).map((s) => s.name),
      [],
    );
    assert.deepEqual(
      node.services.search('', 'DATA', allowed, 10).map((s) => s.name),
      [],
    );
    assert.equal(node.services.search('', null, allowed, 1).length, 1);
  });
});

describe('renderArguments', () => {
  const service: StandaloneService = {
    kind: 'STANDALONE',
    id: '0'.repeat(32),
    name: 'tool',
    description: '',
    allowedPeers: null,
    createdAt: new Date(),
    source: 'api',
    executable: '/bin/echo',
    args: ['--name={{name}}', '{{count}}', '{{verbose}}', '{{suffix}}', 'literal {{name}}!'],
    parameters: [
      { name: 'name', type: 'string', required: true, pattern: '[a-z ;{}$()-]+', maxLength: 40 },
      { name: 'count', type: 'integer', required: false, default: 3, min: 1, max: 10 },
      { name: 'verbose', type: 'boolean', required: false },
      { name: 'suffix', type: 'string', required: false },
    ],
    interfaces: { stdin: false, stdout: true, stderr: true, inputs: [], outputs: [] },
    limits: {},
  };

  it('renders values into their own argument, defaults filled, unset optional placeholders dropped', () => {
    assert.deepEqual(renderArguments(service, { name: 'abc' }), ['--name=abc', '3', 'literal abc!']);
    assert.deepEqual(renderArguments(service, { name: 'abc', count: 7, verbose: true, suffix: 'x y' }), [
      '--name=abc',
      '7',
      'true',
      'x y',
      'literal abc!',
    ]);
  });

  it('keeps injection attempts inside the one argument (no shell, no second expansion)', () => {
    const attack = 'a; rm -rf $(pwd) {{suffix}}';
    const args = renderArguments(service, { name: attack, suffix: 'SECRET' });
    assert.deepEqual(args, [`--name=${attack}`, '3', 'SECRET', `literal ${attack}!`]);
    const spaced = renderArguments(service, { name: 'abc', suffix: '-n --help\n--x' });
    assert.deepEqual(spaced, ['--name=abc', '3', '-n --help\n--x', 'literal abc!']);
  });

  it('refuses unknown, missing, wrongly typed and out-of-range parameters, naming the parameter', () => {
    const refused = (parameters: Record<string, unknown>, name: string) =>
      assert.throws(
        () => renderArguments(service, parameters),
        (error: unknown) => {
          assert.ok(error instanceof InvalidParametersError, String(error));
          assert.equal(error.code, 'INVALID_PARAMETERS');
          assert.equal(error.parameter, name);
          assert.match(error.message, new RegExp(name));
          return true;
        },
      );
    refused({}, 'name');
    refused({ name: 'abc', extra: 1 }, 'extra');
    refused({ name: 5 }, 'name');
    refused({ name: 'ABC' }, 'name'); // pattern, anchored: no partial match
    refused({ name: 'abc\0' }, 'name');
    refused({ name: 'a'.repeat(41) }, 'name');
    refused({ name: 'abc', count: '3' }, 'count');
    refused({ name: 'abc', count: 2.5 }, 'count');
    refused({ name: 'abc', count: 11 }, 'count');
    refused({ name: 'abc', count: 0 }, 'count');
    refused({ name: 'abc', verbose: 'yes' }, 'verbose');
    refused({ name: 'abc', suffix: ['x'] }, 'suffix');
  });
});
