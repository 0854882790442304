package redisstore

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/internal/fields"
)

// CreateClient stores a new client, or returns ErrConflict.
func (s *Store) CreateClient(ctx context.Context, c store.Client) error {
	if c.ID == "" {
		return errors.New("redisstore: create client: empty id")
	}
	created, err := hsetNew.Run(ctx, s.rdb, []string{s.clientKey(c.ID)},
		"id", c.ID, "sh", c.SecretHash, "pub", flag(c.Public), "gr", strings.Join(c.Grants, " "),
		"sc", strings.Join(c.Scopes, " "), "au", strings.Join(c.Audiences, " "), "dp", flag(c.RequireDPoP),
		"ca", fields.Millis(c.CreatedAt), "nb", fields.Millis(c.TokensNotBefore)).Int()
	if err != nil {
		return wrap("create client", err)
	}
	if created == 0 {
		return store.ErrConflict
	}
	if err := s.rdb.SAdd(ctx, s.clientsKey(), c.ID).Err(); err != nil {
		return wrap("create client", err)
	}
	return nil
}

// Client returns the client with the id, or ErrNotFound.
func (s *Store) Client(ctx context.Context, id string) (store.Client, error) {
	if id == "" {
		return store.Client{}, store.ErrNotFound
	}
	m, err := s.rdb.HGetAll(ctx, s.clientKey(id)).Result()
	if err != nil {
		return store.Client{}, wrap("client", err)
	}
	if len(m) == 0 {
		return store.Client{}, store.ErrNotFound
	}
	return parseClient(m), nil
}

// ListClients returns every client, ordered by id.
func (s *Store) ListClients(ctx context.Context) ([]store.Client, error) {
	ids, err := s.rdb.SMembers(ctx, s.clientsKey()).Result()
	if err != nil {
		return nil, wrap("list clients", err)
	}
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGetAll(ctx, s.clientKey(id))
		}
		return nil
	})
	if err != nil {
		return nil, wrap("list clients", err)
	}
	clients := make([]store.Client, 0, len(ids))
	for _, c := range cmds {
		if m := c.Val(); len(m) > 0 {
			clients = append(clients, parseClient(m))
		}
	}
	slices.SortFunc(clients, func(a, b store.Client) int { return strings.Compare(a.ID, b.ID) })
	return clients, nil
}

// UpdateClient replaces the client's secret hash, grants, scopes,
// audiences, RequireDPoP and TokensNotBefore, or returns ErrNotFound.
func (s *Store) UpdateClient(ctx context.Context, c store.Client) error {
	if c.ID == "" {
		return store.ErrNotFound
	}
	done, err := hsetExisting.Run(ctx, s.rdb, []string{s.clientKey(c.ID)},
		"sh", c.SecretHash, "gr", strings.Join(c.Grants, " "), "sc", strings.Join(c.Scopes, " "),
		"au", strings.Join(c.Audiences, " "), "dp", flag(c.RequireDPoP), "nb", fields.Millis(c.TokensNotBefore)).Int()
	if err != nil {
		return wrap("update client", err)
	}
	if done == 0 {
		return store.ErrNotFound
	}
	return nil
}

// DeleteClient deletes the client, or returns ErrNotFound.
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	if id == "" {
		return store.ErrNotFound
	}
	n, err := s.rdb.Del(ctx, s.clientKey(id)).Result()
	if err != nil {
		return wrap("delete client", err)
	}
	if err := s.rdb.SRem(ctx, s.clientsKey(), id).Err(); err != nil {
		return wrap("delete client", err)
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

func parseClient(m map[string]string) store.Client {
	c := store.Client{
		ID:          m["id"],
		Public:      m["pub"] == "1",
		Grants:      fields.Words(m["gr"]),
		Scopes:      fields.Words(m["sc"]),
		Audiences:   fields.Words(m["au"]),
		RequireDPoP: m["dp"] == "1",
		CreatedAt:   msTime(m["ca"]),
		// Absent in a record written before it existed: zero.
		TokensNotBefore: msTime(m["nb"]),
	}
	if sh := m["sh"]; sh != "" {
		c.SecretHash = []byte(sh)
	}
	return c
}
