// The one place that loads @peculiar/x509: the library needs a Reflect metadata polyfill loaded
// before it and Node's WebCrypto as its provider. Import `x509` from here, not from the package.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { webcrypto } from 'node:crypto';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

/** WebCrypto key types by name (the project compiles without the DOM library). */
export type CryptoKey = webcrypto.CryptoKey;
export type CryptoKeyPair = webcrypto.CryptoKeyPair;

export { x509, webcrypto };
