// eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests assert each field they read
type AnyData = Record<string, any>;

export interface GraphQLResponse<T = AnyData> {
  readonly status: number;
  readonly data?: T | null;
  readonly errors?: Array<{ message: string; extensions?: Record<string, unknown>; path?: unknown[] }>;
}

/** A minimal GraphQL-over-HTTP client (real fetch against the real server). */
export async function gql<T = AnyData>(
  url: string,
  query: string,
  variables: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): Promise<GraphQLResponse<T>> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json', ...headers },
    body: JSON.stringify({ query, variables }),
  });
  const body = (await response.json()) as Omit<GraphQLResponse<T>, 'status'>;
  return { status: response.status, ...body };
}
