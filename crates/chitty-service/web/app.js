// The participant page: join, messages, Lamport clock, reconnect and resume.
