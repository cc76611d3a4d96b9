// The bounds of the publish protocol's stream windows: what `publish.window` and `gatehouse publish --window`
// may be set to, and where every stream starts (the window sizing itself is upstream/publishWindows.ts).

/** A stream's receive window before the path is measured: what a stalled reader holds on a fresh connection. */
export const INITIAL_STREAM_WINDOW = 256 << 10;
/** Default largest stream window (`publish.window`, `gatehouse publish --window`): 16 MiB carries 335 MB/s at 50 ms. */
export const DEFAULT_MAX_STREAM_WINDOW = 16 << 20;
/** Bounds of the configured maximum: HTTP/2's own ceiling is 2^31-1; 1 GiB is far beyond any path here. */
export const MIN_STREAM_WINDOW = INITIAL_STREAM_WINDOW;
export const MAX_STREAM_WINDOW = 1 << 30;
