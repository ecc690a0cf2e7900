package sqlstore

// Retryable exposes retryable to the external tests, which check it against
// errors real servers raise.
var Retryable = retryable
