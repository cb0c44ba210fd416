// The page's protobuf codec and gRPC-Web framing for chittychat.v1 (see the contract in /work/notes/web-contract.md while it is built).
