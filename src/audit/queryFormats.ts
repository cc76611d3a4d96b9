// The output formats of `gatehouse audit query`: one list for the command line's choices and the
// query's own check, so the two cannot disagree.
export const QUERY_FORMATS = ['table', 'json', 'summary', 'delegations'] as const;
export type QueryFormat = (typeof QUERY_FORMATS)[number];
