import { readFileSync } from 'node:fs';
import { parse as parseIni } from 'ini';
import { ConfigError } from './errors.ts';
import { type Config, type SectionName, CONFIG_SPEC, SECTION_NAMES, isLoopbackHost, lookupSetting, settingsOf } from './schema.ts';

export const ENV_PREFIX = 'REMOTE_NETWORK_';
/** The one environment variable that is not a setting: the config file to read. */
export const ENV_CONFIG_FILE = `${ENV_PREFIX}CONFIG`;

/** A value for one setting and where it came from, so an error can point at the right place. */
export interface ConfigOverride {
  readonly section: string;
  readonly key: string;
  readonly value: string;
  readonly source: string;
}

export interface LoadConfigOptions {
  /** INI file layered over the built-in defaults. */
  readonly file?: string | undefined;
  /** Environment layered over the file (`REMOTE_NETWORK_<SECTION>_<KEY>`). */
  readonly env?: NodeJS.ProcessEnv;
  /** Command-line flags, the highest precedence. */
  readonly flags?: readonly ConfigOverride[];
}

/**
 * Builds the configuration: built-in defaults < config file < environment < flags. Every problem
 * found is reported at once (not just the first), each naming its source, section and key.
 */
export function loadConfig(options: LoadConfigOptions = {}): Config {
  const problems: string[] = [];
  const layers: ConfigOverride[] = [];
  if (options.file !== undefined) layers.push(...readIniFile(options.file, problems));
  if (options.env) layers.push(...readEnvironment(options.env, problems));
  layers.push(...(options.flags ?? []));

  // Later layers win: keep the last value given for each setting.
  const chosen = new Map<string, ConfigOverride>();
  for (const layer of layers) {
    if (!lookupSetting(layer.section, layer.key)) {
      problems.push(`${layer.source}: unknown setting [${layer.section}] ${layer.key}${suggestKeys(layer.section)}`);
      continue;
    }
    chosen.set(`${layer.section}.${layer.key}`, layer);
  }

  const config: Record<string, Record<string, unknown>> = {};
  for (const section of SECTION_NAMES) {
    const values: Record<string, unknown> = {};
    for (const [key, setting] of settingsOf(section)) {
      const given = chosen.get(`${section}.${key}`);
      const raw = given?.value ?? setting.default;
      const result = setting.schema.safeParse(raw);
      if (result.success) {
        values[key] = result.data;
      } else {
        const source = given?.source ?? 'built-in default';
        const detail = result.error.issues.find((i) => i.code === 'custom' && i.params?.detail === true)?.message;
        problems.push(`${source}: [${section}] ${key} = ${JSON.stringify(raw)}: expected ${setting.form}${detail ? ` (${detail})` : ''}`);
      }
    }
    config[section] = values;
  }
  if (problems.length > 0) throw new ConfigError(problems);

  const typed = config as Config;
  checkCombinations(typed, chosen, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return typed;
}

/** Rules that span several settings. */
function checkCombinations(config: Config, chosen: Map<string, ConfigOverride>, problems: string[]): void {
  const sourceOf = (section: SectionName, key: string) => chosen.get(`${section}.${key}`)?.source ?? 'built-in default';
  if (!isLoopbackHost(config.api.host) && config.api.token.length === 0) {
    problems.push(
      `${sourceOf('api', 'host')}: [api] host = ${config.api.host} is not a loopback address, so [api] token must be set ` +
        '(a secret of at least 16 characters)',
    );
  }
  if (config.relay.relay_mode && config.node.node_type === 'private') {
    problems.push(`${sourceOf('relay', 'relay_mode')}: [relay] relay_mode = true needs a public node, but [node] node_type = private`);
  }
}

function readIniFile(file: string, problems: string[]): ConfigOverride[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    problems.push(`config file ${file}: cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
    return [];
  }
  const parsed = parseIni(text) as Record<string, unknown>;
  const source = `config file ${file}`;
  const out: ConfigOverride[] = [];
  for (const [section, body] of Object.entries(parsed)) {
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      problems.push(`${source}: "${section}" is outside any [section]; put it under one of ${sectionList()}`);
      continue;
    }
    if (!Object.hasOwn(CONFIG_SPEC, section)) {
      problems.push(`${source}: unknown section [${section}]; expected one of ${sectionList()}`);
      continue;
    }
    // ini gives strings, true for a key without `=`, arrays for `key[]` and objects for subsections.
    for (const [key, value] of Object.entries(body as Record<string, string | boolean | object | null>)) {
      if (typeof value === 'object' && value !== null) {
        problems.push(`${source}: [${section}] ${key}: a single value is expected`);
        continue;
      }
      out.push({ section, key, value: String(value ?? ''), source });
    }
  }
  return out;
}

function readEnvironment(env: NodeJS.ProcessEnv, problems: string[]): ConfigOverride[] {
  const out: ConfigOverride[] = [];
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || name === ENV_CONFIG_FILE || value === undefined) continue;
    const rest = name.slice(ENV_PREFIX.length);
    const section = SECTION_NAMES.find((s) => rest.startsWith(`${s.toUpperCase()}_`));
    const source = `environment variable ${name}`;
    if (!section) {
      problems.push(`${source}: names no known section; expected ${ENV_PREFIX}<SECTION>_<KEY> with SECTION one of ${sectionList()}`);
      continue;
    }
    out.push({ section, key: rest.slice(section.length + 1).toLowerCase(), value, source });
  }
  return out;
}

function sectionList(): string {
  return SECTION_NAMES.map((s) => `[${s}]`).join(', ');
}

function suggestKeys(section: string): string {
  if (!Object.hasOwn(CONFIG_SPEC, section)) return `; known sections are ${sectionList()}`;
  return `; known keys in [${section}] are ${settingsOf(section as SectionName)
    .map(([k]) => k)
    .join(', ')}`;
}

/** `{ 'section.key': value }` as overrides from one source (devnet, tests, benchmarks). */
export function overridesFrom(settings: Readonly<Record<string, string>>, source: string): ConfigOverride[] {
  return Object.entries(settings).map(([name, value]) => {
    const [section = '', key = ''] = name.split('.');
    return { section, key, value, source };
  });
}
