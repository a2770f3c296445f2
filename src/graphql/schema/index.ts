import { lexicographicSortSchema } from 'graphql';
import { builder } from '../builder.ts';
import './scalars.ts';
import './node-info.ts';
import './health.ts';
import './known-peers.ts';
import './events.ts';
import './metadata.ts';
import './dht.ts';
import './connections.ts';
import './connection-limits.ts';
import './nat.ts';
import './jobs.ts';
import './data.ts';
import './services.ts';
import './service-search.ts';

/** The API schema. Importing this module has no side effect beyond building the schema. */
export const schema = lexicographicSortSchema(builder.toSchema());
