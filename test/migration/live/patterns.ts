/** What the live-migration tests plant: in private pages (must never travel in plaintext) and in shared ones (must). */
export const PRIVATE_PATTERN = Buffer.from('PRIVATE-PATTERN-7f3c9a61-do-not-leak!');
export const SHARED_PATTERN = Buffer.from('SHARED-PATTERN-2b8e54d0-plaintext-ok');
