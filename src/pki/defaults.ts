// Default validity of the development PKI's certificates, apart from the PKI code so that the command
// line can show them in its help without loading the X.509 libraries.
export const DEFAULT_SERVER_DAYS = 825;
export const DEFAULT_CLIENT_DAYS = 365;
