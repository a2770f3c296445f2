/** Limits of service definitions and of service search, declared once for both sides. */

/** Characters of a service's description. */
export const MAX_DESCRIPTION_CHARS = 500;
/** Parameters one service may declare. */
export const MAX_PARAMETERS = 32;
/** Entries of a service's argument template, and characters of one entry. */
export const MAX_ARGS = 64;
export const MAX_ARG_CHARS = 1024;
/** Characters of a workspace file name (inputs, outputs). */
export const MAX_FILE_NAME_CHARS = 128;
/** Named input files and named output files, each. */
export const MAX_INTERFACE_FILES = 16;
/** Peer ids in one allow-list. */
export const MAX_ALLOWED_PEERS = 256;
/** Characters of a parameter's pattern, and of its description. */
export const MAX_PATTERN_CHARS = 200;
export const MAX_PARAMETER_DESCRIPTION_CHARS = 200;
/** A string parameter's value, when its spec sets no smaller maxLength. */
export const MAX_PARAMETER_VALUE_CHARS = 4096;
/** Services one node holds (API and files together). */
export const MAX_SERVICES = 10_000;
/** Bytes of one file in the services directory, and files read from it. */
export const MAX_SERVICE_FILE_BYTES = 64 * 1024;
export const MAX_SERVICE_FILES = 1000;

/** Characters of a search query. */
export const MAX_QUERY_CHARS = 100;
/** Services in one peer's answer, whatever the configuration says (the frame must hold them). */
export const MAX_SEARCH_RESULTS_WIRE = 100;
/** Bytes of one answer's service list as JSON: well under the frame limit (MAX_FRAME_BYTES). */
export const MAX_SEARCH_RESULT_BYTES = 192 * 1024;
/** Requesting peers whose search rate is tracked at once (the oldest are forgotten first). */
export const MAX_RATE_LIMITED_PEERS = 4096;
/** Peers one search may ask (explicit peer ids included). */
export const MAX_SEARCH_PEERS = 256;

/** Changes of services within this window go out as one metadata publication. */
export const SUMMARY_DEBOUNCE_MS = 250;
