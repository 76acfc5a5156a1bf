package callback

// DialErrorForTest is dialError, for the external tests.
var DialErrorForTest = dialError
