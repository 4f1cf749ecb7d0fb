// The version served by `GET /` and `GET /slow`.
// Integration tests rewrite the next line with sed to simulate a deploy of a
// new version, so keep it exactly in the shape `let version = "<value>"`.
let version = "1"
