module github.com/vmmkit/vmmkit

go 1.26
