module dovecot-kafka

go 1.26.0
