package redisstore

import (
	"bytes"
	"compress/flate"
	"io"
	"strings"
	"sync"
)

// A session's User-Agent is stored compressed, exactly and losslessly:
// raw DEFLATE (RFC 1951) with uaDictionary as the preset dictionary, its
// final sync marker dropped as RFC 7692 §7.2.1 does for WebSocket
// messages. A browser's User-Agent shares most of its bytes with one of
// the dictionary's, so it takes 5 to 16 bytes instead of 70 to 140
// (TestUserAgentCompression). Only Go reads it; the scripts store the
// bytes they are given.
//
// uaDictionary is part of the record format: records written with it
// (form formBinary) must be read with the same bytes, so it never
// changes. A better dictionary would be a new form (2, 3, ...) beside it.
const uaDictionary = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36" +
	"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1" +
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15" +
	"Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0" +
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0"

// uaDict is uaDictionary as the flate package takes it; never written.
var uaDict = []byte(uaDictionary)

// syncTail ends a stream cut after a sync flush: the sync marker that was
// dropped, then an empty final stored block.
const syncTail = "\x00\x00\xff\xff\x01\x00\x00\xff\xff"

var (
	uaWriters = sync.Pool{New: func() any {
		w, _ := flate.NewWriterDict(io.Discard, flate.BestCompression, uaDict)
		return w
	}}
	uaReaders = sync.Pool{New: func() any {
		d := &uaDecoder{}
		d.r = flate.NewReaderDict(&d.src, uaDict)
		return d
	}}
)

// encodeUA returns the stored form of a user agent: compressed if that is
// shorter, else raw.
func encodeUA(ua string) string {
	if ua == "" {
		return ""
	}
	var b bytes.Buffer
	b.WriteByte(formBinary)
	w := uaWriters.Get().(*flate.Writer)
	defer uaWriters.Put(w)
	w.Reset(&b)
	_, err := io.WriteString(w, ua)
	if err == nil {
		err = w.Flush()
	}
	if err != nil || b.Len()-4 >= 1+len(ua) {
		return compactRaw(ua)
	}
	return b.String()[:b.Len()-4] // without the sync marker 00 00 ff ff
}

// decodeUA returns the user agent of its stored form.
func decodeUA(v string) (string, error) {
	if v == "" || v[0] == formRaw {
		return strings.TrimPrefix(v, "\x00"), nil
	}
	if v[0] != formBinary {
		return "", errRecord
	}
	d := uaReaders.Get().(*uaDecoder)
	defer uaReaders.Put(d)
	d.src.Reset(v[1:] + syncTail)
	d.out.Reset()
	// d.src is an io.ByteReader, so flate reads it without a buffer of
	// its own; d.out reads in small steps, unlike io.Copy's 32 KiB buffer.
	if err := d.r.(flate.Resetter).Reset(&d.src, uaDict); err != nil {
		return "", errRecord
	}
	if _, err := d.out.ReadFrom(io.LimitReader(d.r, 1<<16)); err != nil {
		return "", errRecord
	}
	return d.out.String(), nil
}

// uaDecoder is a pooled decompressor with its input and output buffers.
type uaDecoder struct {
	r   io.ReadCloser
	src strings.Reader
	out bytes.Buffer
}
