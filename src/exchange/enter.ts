// The exchange stage: for each arrival the dispatcher hands it, screens it, opens its Exchange, runs the
// one admission pipeline, then lets the way in refuse on its transport or carry what was admitted.
import { signInRedirect } from '../session/signInRedirect.ts';
import { admit } from './admit.ts';
import type { ConnectionContext } from './connection.ts';
import { openExchange, refuseUncounted } from './exchange.ts';
import type { DecisionKind, WayIn } from './wayIn.ts';

/**
 * Runs one arrival through its way in. On the HTTP path this is the whole per-request preamble: the way
 * in is made once and its state is one object per request, so this stage adds no closure of its own.
 */
export async function enter<A extends unknown[], S, K extends DecisionKind>(way: WayIn<A, S, K>, conn: ConnectionContext, state: S): Promise<void> {
  const early = way.screen?.(state);
  if (early) {
    const { refusal, record } = early;
    refuseUncounted(conn, way.stage, { ...record, decision: 'deny', status: refusal.status, reason: refusal.reason });
    return way.answer(state, refusal);
  }
  const exchange = openExchange(conn, way.stage, way.opens(state));
  way.opened?.(state, exchange);
  const admitted = await admit(exchange, way, state);
  if (admitted.ok) return way.carry(state, exchange, admitted.value);
  const { refusal } = admitted.error;
  // A browser without a (working) session is sent to sign in, and back here afterwards.
  const navigation = refusal.status === 401 ? way.signInFrom?.(state) : undefined;
  const signIn = navigation && signInRedirect(navigation);
  if (signIn) return way.refuse(state, exchange, { ...admitted.error, refusal: { ...refusal, status: 303, headers: { location: signIn } } });
  way.refuse(state, exchange, admitted.error);
}
