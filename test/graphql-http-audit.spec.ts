import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { serverAudits } from 'graphql-http';
import { startTestDaemon } from './helpers/daemon.ts';

describe('GraphQL over HTTP compliance', () => {
  it('passes every MUST of the graphql-http audit suite', async (t) => {
    const daemon = await startTestDaemon(t);
    const audits = serverAudits({ url: daemon.api.url, fetchFn: fetch });
    const failures: string[] = [];
    let musts = 0;
    for (const audit of audits) {
      const result = await audit.fn();
      if (!audit.name.startsWith('MUST')) continue;
      musts++;
      if (result.status !== 'ok') failures.push(`${audit.name}: ${result.reason}`);
    }
    assert.ok(musts > 10, `ran the MUST audits (${musts})`);
    assert.deepEqual(failures, []);
  });
});
